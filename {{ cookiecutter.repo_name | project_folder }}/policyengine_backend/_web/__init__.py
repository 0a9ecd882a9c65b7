"""The HTTP layer: the app, its middleware, error answers and routes."""

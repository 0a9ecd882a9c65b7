"""The calculation worker: the process that runs the model, and its supervision."""

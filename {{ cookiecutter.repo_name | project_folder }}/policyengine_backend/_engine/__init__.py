"""The calculation engine: a request's path from its checks to its answer."""

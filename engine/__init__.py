"""idhooks engine: receive -> verify -> store -> match -> deliver."""

__version__ = "0.1.0"

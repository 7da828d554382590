"""hypereal: a self-hostable implementation of the Hypereal API."""

__version__ = "0.1.0"

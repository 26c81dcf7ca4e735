"""wardwatch: real-time early warning for hospital patients."""

__version__ = "0.1.0"

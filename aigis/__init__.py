"""aigis: streaming detection and attribution of AI-generated images."""

__version__ = "0.1.0"

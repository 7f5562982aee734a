"""elastiq: an elastic worker pool for NLP model inference (the shared contract and CLI)."""

__version__ = "0.1.0"

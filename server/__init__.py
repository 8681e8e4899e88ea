"""stretto: a workflow-and-streaming server for AI-assisted project apps."""

__version__ = "0.1.0"

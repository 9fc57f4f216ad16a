"""The edge agent: an OpenAI-compatible local LLM endpoint for one device."""

__version__ = "0.1.0"

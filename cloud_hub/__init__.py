"""Open-AutoGLM cloud hub: a NATS inference service for big models (GGUF, ONNX, OpenAI upstream)."""

__version__ = "0.1.0"

"""Warden: an OpenAI-compatible gateway that keeps a vLLM fleet up."""

__version__ = "0.1.0"

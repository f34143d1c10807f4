"""OpenAI-compatible HTTP API of the head."""

"""Worker rank: one vLLM engine behind a ZeroMQ DEALER."""

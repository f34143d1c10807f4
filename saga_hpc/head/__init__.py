"""Rank 0: the head. Drives the scheduling core with real events (HTTP, ZeroMQ, clock)."""

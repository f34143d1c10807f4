"""Benchmarks: simulated systems side by side (and, later, real vLLM workers)."""

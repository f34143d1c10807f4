"""Agent workloads: seeded generators (swe-bench, webarena), tenant mixes, JSONL traces."""

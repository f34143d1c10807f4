"""The scheduling core: routing, ordering and retention policies, pure (events
in, decisions out, no I/O). The head and the simulator drive the same objects."""

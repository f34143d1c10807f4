"""Discrete-event cluster simulator driving the same scheduling core as the head."""

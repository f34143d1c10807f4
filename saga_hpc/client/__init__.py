"""Clients of the service: scripted agents that replay workloads."""

"""Slurm integration: accounts, shares and jobs through the Slurm CLI (pyslurm when it matches)."""

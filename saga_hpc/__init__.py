"""saga-hpc: workflow-atomic LLM inference scheduling for AI agents on Slurm clusters."""

__version__ = "0.1.0"

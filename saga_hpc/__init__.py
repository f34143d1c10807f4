"""saga-hpc: workflow-atomic LLM inference scheduling for AI agents on Slurm clusters."""

from saga_hpc.compiled import guard_imports

__version__ = "0.1.0"

# The core and the simulator run compiled (mypyc) when built from these very sources,
# else as the .py files (saga_hpc/compiled.py).
guard_imports()

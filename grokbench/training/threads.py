"""How many CPU threads torch uses for a run (``--threads``, ``$GROKBENCH_THREADS``), and how idle ones wait.

The default: torch's own thread count (one per core) with ``OMP_WAIT_POLICY=PASSIVE``, so that waiting threads
sleep instead of spinning; measured in README 'Threads' and docs/performance.md (``benchmarks/threads.py``).
"""

from __future__ import annotations

import os

THREADS_ENV = "GROKBENCH_THREADS"
#: None: torch's own default, one thread per core
DEFAULT_THREADS: int | None = None
WAIT_POLICY_ENV = "OMP_WAIT_POLICY"
DEFAULT_WAIT_POLICY = "PASSIVE"


def prefer_passive_waiting() -> None:
    """Let OpenMP's idle threads sleep (``OMP_WAIT_POLICY=PASSIVE``) unless the environment already says how they
    wait. OpenMP reads it once, when torch loads it: call this before torch is imported (the CLI does)."""
    os.environ.setdefault(WAIT_POLICY_ENV, DEFAULT_WAIT_POLICY)


def set_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads to ``threads``, else ``$GROKBENCH_THREADS``, else :data:`DEFAULT_THREADS`
    (torch's own count); return the count in force."""
    import torch

    from grokbench.errors import ConfigError

    if threads is None:
        text = os.environ.get(THREADS_ENV)
        try:
            threads = int(text) if text else DEFAULT_THREADS
        except ValueError:
            raise ConfigError(f"${THREADS_ENV} must be a positive integer (got {text!r})") from None
    if threads is None:
        return torch.get_num_threads()
    if threads < 1:
        raise ConfigError(f"threads must be at least 1 (got {threads})")
    torch.set_num_threads(threads)
    return threads

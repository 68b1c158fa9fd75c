"""How many CPU threads torch uses for a run (``--threads``, ``$GROKBENCH_THREADS``); the default is measured:
see README 'Threads'."""

from __future__ import annotations

import os

THREADS_ENV = "GROKBENCH_THREADS"
DEFAULT_THREADS = 1


def set_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads to ``threads``, else ``$GROKBENCH_THREADS``, else :data:`DEFAULT_THREADS`."""
    import torch

    from .errors import ConfigError

    if threads is None:
        text = os.environ.get(THREADS_ENV)
        try:
            threads = int(text) if text else DEFAULT_THREADS
        except ValueError:
            raise ConfigError(f"${THREADS_ENV} must be a positive integer (got {text!r})") from None
    if threads < 1:
        raise ConfigError(f"threads must be at least 1 (got {threads})")
    torch.set_num_threads(threads)
    return threads

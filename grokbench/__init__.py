"""grokbench: a plugin-based benchmark suite for grokking.

The core (this package) knows no task, model or regularizer by name: every
concrete component comes from a plugin found through the ``grokbench``
entry-point group. See :mod:`grokbench.plugin.hookspecs` for the contract.
"""

from __future__ import annotations

from grokbench.version import __version__

__all__ = ["hookimpl", "load_checkpoint", "run", "__version__"]

#: not typing's: importing typing alone takes longer than everything else here (mypy reads the name as typing's)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from grokbench.plugin.manager import hookimpl
    from grokbench.training.programs import RunResult


def __getattr__(name: str) -> Any:
    """``hookimpl`` on first use: importing the package stays cheap (no pluggy, no entry points), so that
    ``python -m grokbench`` and the ``grokbench`` command install their signal handlers within milliseconds."""
    if name == "hookimpl":
        from grokbench.plugin.manager import hookimpl

        return hookimpl
    raise AttributeError(f"module 'grokbench' has no attribute {name!r}")


def run(*args: Any, **kwargs: Any) -> RunResult:
    """Configure, train, store and summarize one run; see :func:`grokbench.api.run`."""
    from grokbench.api import run as _run

    return _run(*args, **kwargs)


def load_checkpoint(*args: Any, **kwargs: Any) -> Any:
    """The model plugin of a run with a checkpoint's parameters; see :func:`grokbench.api.load_checkpoint`."""
    from grokbench.api import load_checkpoint as _load

    return _load(*args, **kwargs)

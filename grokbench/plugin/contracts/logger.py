"""Loggers: a run's events, sent to a tracker."""

from __future__ import annotations

from typing import Any, ClassVar

from grokbench.plugin.contracts.base import Component, Params


class Logger(Component):
    """Receives a run's events (start, each evaluation, each checkpoint, end) and sends them to a tracker: a file,
    TensorBoard, MLflow, Weights & Biases.

    One instance serves the runs of one command in turn. It may write in ``directory`` (``--log-dir``; default
    ``<store>.logs``). ``requires`` names the modules it imports, checked before any training. A logger that
    raises is switched off for the run, with a warning; the run goes on.
    """

    #: importable modules this logger needs (checked when it is selected)
    requires: ClassVar[tuple[str, ...]] = ()
    #: the grokbench extra that installs them, if any
    extra: ClassVar[str | None] = None

    def __init__(self, params: Params, *, directory: Any):
        super().__init__(params)
        self.directory = directory

    @classmethod
    def check_class(cls) -> None:
        super().check_class()
        if not (isinstance(cls.requires, tuple) and all(isinstance(m, str) for m in cls.requires)):
            raise TypeError(f"{cls.__name__}.requires must be a tuple of module names")

    def ready(self) -> None:
        """Called once before any training: raise (one line) when the tracker cannot be used (an unreachable
        server, a URI the tracker refuses), so that the command is refused before anything is written."""

    def start(self, run_id: str, config: dict[str, Any], info: dict[str, Any]) -> None:
        """A run starts (or resumes): its id, resolved configuration (JSON) and ``info`` (plugins, store)."""

    def evaluation(self, step: int, record: dict[str, float]) -> None:
        """One evaluation: every curve's value at ``step``."""

    def checkpoint(self, step: int, path: str, reasons: list[str]) -> None:
        """A checkpoint was written (``reasons``: memorize, generalize, end, every, interrupted)."""

    def end(self, status: str, summary: dict[str, Any]) -> None:
        """The run ended with ``status`` and ``summary`` (t_memorize, t_generalize, final values...)."""

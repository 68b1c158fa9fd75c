"""Logger plugins: made before training, sent each run's events, and dropped (with one warning) when they fail."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grokbench.plugin.registry import logger_class

if TYPE_CHECKING:
    from grokbench.plugin.registry import Registry
    from grokbench.training.results import RunResult


def make_loggers(names: Sequence[str], registry: Registry, directory: str | os.PathLike[str]) -> list[Any]:
    """Instantiate the named logger plugins (ConfigError for an unknown one or a missing extra), before any training."""
    return [
        (cls := logger_class(name, registry))(cls.Params(), directory=Path(directory)) for name in dict.fromkeys(names)
    ]


class _Dispatch:
    """Sends events to loggers; a logger that raises is reported once on stderr and dropped, the run goes on."""

    def __init__(self, loggers: Sequence[Any]):
        self.loggers = list(loggers)

    def __call__(self, event: str, *args: Any) -> None:
        for logger in list(self.loggers):
            try:
                getattr(logger, event)(*args)
            except Exception as exc:  # a tracker's failure must not cost the run
                print(
                    f"warning: logger '{logger.name}' failed at {event} ({type(exc).__name__}: {exc}); it is off for this run",
                    file=sys.stderr,
                )
                self.loggers.remove(logger)


def replay(loggers: Sequence[Any], result: RunResult) -> None:
    """A finished run's events, for loggers of runs that were not trained here (suite workers)."""
    send = _Dispatch(loggers)
    send(
        "start",
        result.run_id,
        result.config.model_dump(mode="json"),
        {"plugins": result.plugins, "environment": result.environment},
    )
    for record in result.curves.to_dict("records"):
        send("evaluation", int(record["step"]), record)
    send("end", result.status, result.summary)

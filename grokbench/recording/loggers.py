"""Logger plugins: made before training, sent each run's events, and dropped (with one warning) when they fail."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grokbench.errors import ConfigError, describe
from grokbench.files import usable_folder
from grokbench.plugin.registry import logger_class

if TYPE_CHECKING:
    from grokbench.plugin.registry import Registry
    from grokbench.training.results import RunResult


def log_folder(
    log_dir: str | os.PathLike[str] | None, store_path: str | os.PathLike[str] | None
) -> tuple[Path, Path | None]:
    """Where loggers write, and the root below which no symlink is followed: ``--log-dir`` as the user named it
    (its own components are theirs), or ``<store>.logs`` beside the store (a symlink there is refused)."""
    if log_dir is not None and str(log_dir):
        return Path(log_dir), None
    directory = (Path(f"{store_path}.logs") if store_path is not None else Path("grokbench-logs")).absolute()
    return directory, directory.parent


def make_loggers(
    names: Sequence[str],
    registry: Registry,
    directory: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
) -> list[Any]:
    """Instantiate the named logger plugins and check them, before any training: ConfigError (exit 2) for an
    unknown logger, a missing extra, a folder that cannot be written (read-only, a file, a full disk, a symlink
    below ``root``), or a logger whose ``ready()`` (can its tracker be reached?) raises."""
    made = [
        (cls := logger_class(name, registry))(cls.Params(), directory=Path(directory)) for name in dict.fromkeys(names)
    ]
    for logger in made:
        try:
            logger.ready()
        except ConfigError:
            raise
        except Exception as exc:  # the tracker's own error, its first line
            said = str(exc).strip().splitlines()
            raise ConfigError(f"logger '{logger.name}' cannot start: {said[0] if said else describe(exc)}") from None
    if made:
        usable_folder(directory, "the log folder", root=root)
    return made


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

"""Writing report files: every file a report, plot or export puts into an output folder goes through here.

A file is written to a temporary file in its folder and moved into place with :func:`os.replace`, so a
reader never sees half a file; a symbolic link at the target is refused rather than followed.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import ConfigError


def write_file(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically; refuse a symlink at ``path``."""
    path = Path(path)
    if path.is_symlink():
        raise ConfigError(f"refusing to write {path}: it is a symbolic link")
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path

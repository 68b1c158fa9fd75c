"""Files grokbench reads from the user and writes for them, safely.

* :func:`output_dir`: an ``--out`` folder checked before anything is computed or written: a path that
  is a file or a device, a folder that cannot be created or written, is a ConfigError (exit 2).
* :func:`write_file` (:func:`write_bytes`, :func:`write_text`) / :func:`save_figure`: a file written into an output folder
  through a temporary file and ``os.replace``, never through a symlink or onto anything but a regular file.
* :func:`read_text`: a user's file (suite, baseline) read only if it is a regular file of bounded size.
* :func:`md_cell`: text made safe for one cell of a Markdown table (``|``, newlines, raw HTML).
"""

from __future__ import annotations

import html
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from grokbench.errors import ConfigError

#: the largest suite or baseline file grokbench reads
MAX_INPUT_BYTES = 4 * 1024 * 1024


def writable(path: Path) -> bool:
    """Whether this process may write ``path`` (a file or directory): its permissions and its file system."""
    try:
        read_only_fs = bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        read_only_fs = False
    return os.access(path, os.W_OK) and not read_only_fs


def output_dir(out: str | os.PathLike[str], names: Iterable[str] = ()) -> Path:
    """Check (and create) an output folder; ``names``: files about to be written there, checked too."""
    if not str(out).strip():
        raise ConfigError("invalid --out '': an output folder must not be empty")
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path} is not a folder (it is a {_kind(path)})")
    if not path.exists():
        parent = next((p for p in path.absolute().parents if p.exists()), None)
        if parent is None or not parent.is_dir() or not writable(parent):
            raise ConfigError(f"cannot create the output folder {path}: {parent} is not a writable folder")
    elif not writable(path):
        raise ConfigError(f"the output folder {path} is not writable")
    for name in names:
        check_target(path / name)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the output folder {path}: {exc.strerror or exc}") from None
    return path


def _kind(path: Path) -> str:
    if path.is_symlink():
        return "symlink"
    if path.is_file():
        return "file"
    if path.is_dir():
        return "folder"
    return "device or other special file"


def check_target(path: Path) -> None:
    """Refuse a target that is a symlink (never written through) or anything but a regular file."""
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise ConfigError(f"refusing to write {path}: it is a {_kind(path)}, not a regular file (remove it first)")


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder, then ``os.replace``."""
    path = Path(path)
    check_target(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_file(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """:func:`write_text` or :func:`write_bytes`, by the type of ``data``."""
    return write_text(path, data) if isinstance(data, str) else write_bytes(path, data)


def save_figure(fig: Any, path: str | os.PathLike[str], **kwargs: Any) -> Path:
    """``fig.savefig`` into memory, then :func:`write_bytes` (matplotlib would follow a symlink)."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format=Path(path).suffix.lstrip("."), **kwargs)
    return write_bytes(path, buffer.getvalue())


def read_text(path: str | os.PathLike[str], what: str, limit: int = MAX_INPUT_BYTES) -> str:
    """A user's text file, refused (ConfigError) unless it is a regular file of at most ``limit`` bytes."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"no {what} {path}")
    if not path.is_file():
        raise ConfigError(f"cannot read {what} {path}: it is a {_kind(path)}, not a regular file")
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise ConfigError(f"cannot read {what} {path}: larger than {limit // (1024 * 1024)} MiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read {what} {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def md_cell(value: Any) -> str:
    """One Markdown table cell: raw HTML escaped, ``|`` escaped, newlines and tabs as spaces."""
    text = html.escape(str(value), quote=False)
    return " ".join(text.replace("|", "\\|").split())

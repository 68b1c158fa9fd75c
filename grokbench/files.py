"""Files grokbench reads from the user and writes for them, safely.

* :func:`output_dir`: an ``--out`` folder checked before anything is computed or written: a path that
  is a file or a device, a folder that cannot be created or written, is a ConfigError (exit 2).
* :func:`write_file` (:func:`write_bytes`, :func:`write_text`) / :func:`save_figure`: a file written into an output folder
  through a temporary file and ``os.replace``, never through a symlink or onto anything but a regular file.
* :func:`read_text`: a user's file (suite, baseline) read only if it is a regular file of bounded size.
* :func:`md_cell`: text made safe for one cell of a Markdown table (``|``, newlines, raw HTML).
"""

from __future__ import annotations

import contextlib
import errno
import html
import os
import secrets
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO, TextIO

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
    if "\x00" in str(out):
        raise ConfigError(f"invalid --out {str(out)!r}: a path cannot hold a NUL character")
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
        raise ConfigError(
            f"refusing to write {shown(path)}: it is a {_kind(path)}, not a regular file (remove it first)"
        )


def shown(path: str | os.PathLike[str], limit: int = 120) -> str:
    """``path`` for a one-line message: a path longer than ``limit`` characters is cut in the middle."""
    text = str(path)
    return text if len(text) <= limit else f"{text[: limit // 2]}…{text[-limit // 2 :]}"


def failed_write(path: str | os.PathLike[str], exc: OSError) -> ConfigError:
    """The one line for a write the machine refused (a full disk, a name too long, a read-only folder)."""
    return ConfigError(f"cannot write {shown(path)}: {exc.strerror or exc}")


def _parts(root: Path, path: Path) -> tuple[str, ...]:
    """The components of ``path`` below ``root`` (ConfigError if it is not below it, or climbs with '..')."""
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        raise ConfigError(f"refusing to write {shown(path)}: it is outside {shown(root)}") from None
    if ".." in parts:
        raise ConfigError(f"refusing to write {shown(path)}: '..' climbs out of {shown(root)}")
    return parts


def _open_folder(root: Path, parts: Iterable[str], create: bool, shown_as: Path) -> int:
    """A descriptor of ``root/parts``: each component below ``root`` opened without following a symlink (a
    symlink or a file there is refused), created when missing and ``create``. The caller closes it."""
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise ConfigError(f"cannot open the folder {shown(root)}: {exc.strerror or exc}") from None
    try:
        for part in parts:
            if create:
                try:
                    os.mkdir(part, 0o777, dir_fd=fd)
                except FileExistsError:
                    pass
                except OSError as exc:
                    raise failed_write(shown_as, exc) from None
            try:
                below = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    what = "symlink" if stat.S_ISLNK(os.lstat(part, dir_fd=fd).st_mode) else "file"
                    raise ConfigError(
                        f"refusing to write under {shown(shown_as)}: {part} is a {what}, not a folder (remove it first)"
                    ) from None
                raise failed_write(shown_as, exc) from None
            os.close(fd)
            fd = below
        return fd
    except BaseException:
        os.close(fd)
        raise


def folder(root: str | os.PathLike[str], *parts: str, create: bool = True) -> Path:
    """``root/parts...`` as a folder, created when missing, refused (ConfigError) when any component below
    ``root`` is a symlink or a file: for writers that take a folder (trackers, checkpoint files)."""
    root = Path(root)
    path = root.joinpath(*parts)
    try:
        os.close(_open_folder(root, _parts(root, path), create, path))
    except OSError as exc:
        raise failed_write(path, exc) from None
    return path


def _check_name(fd: int, name: str, path: Path) -> None:
    try:
        mode = os.lstat(name, dir_fd=fd).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        what = "symlink" if stat.S_ISLNK(mode) else "folder" if stat.S_ISDIR(mode) else "device or other special file"
        raise ConfigError(f"refusing to write {shown(path)}: it is a {what}, not a regular file (remove it first)")


def _stage(fd: int, name: str, fill: Callable[[BinaryIO], object]) -> str:
    """A temporary file beside ``name`` in folder ``fd``, filled and flushed to disk; returns its name."""
    for _ in range(100):
        tmp = f".{name[:200]}.{secrets.token_hex(4)}.tmp"
        try:
            handle = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=fd)
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover
        raise FileExistsError(errno.EEXIST, "no free temporary name", name)
    try:
        with os.fdopen(handle, "wb") as f:
            fill(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(tmp, dir_fd=fd)
        raise
    return tmp


class Batch:
    """Files written into one folder as one unit: staged in memory by :meth:`add` (:meth:`figure`), then
    :meth:`commit` writes each beside its target and replaces the targets only when every one was written, so a
    failure (a full disk, a refused target) leaves the previous set as it was. ``with Batch(...)`` commits on
    success and writes nothing when the block raises."""

    def __init__(self, folder: str | os.PathLike[str], root: str | os.PathLike[str] | None = None):
        self.folder = Path(folder)
        self.root = Path(root) if root is not None else self.folder
        self.files: dict[str, bytes] = {}

    def add(self, name: str, data: str | bytes) -> Path:
        self.files[name] = data.encode("utf-8") if isinstance(data, str) else data
        return self.folder / name

    def figure(self, fig: Any, name: str, **kwargs: Any) -> Path:
        """A matplotlib figure rendered into memory (matplotlib would follow a symlink) by its name's suffix."""
        import io

        buffer = io.BytesIO()
        fig.savefig(buffer, format=Path(name).suffix.lstrip("."), **kwargs)
        return self.add(name, buffer.getvalue())

    def commit(self) -> list[Path]:
        return _write_all(self.root, self.folder, {name: _filler(data) for name, data in self.files.items()})

    def __enter__(self) -> Batch:
        return self

    def __exit__(self, kind: object, *rest: object) -> None:
        if kind is None:
            self.commit()


def _filler(data: bytes) -> Callable[[BinaryIO], object]:
    return lambda f: f.write(data)


def _write_all(root: Path, where: Path, fills: dict[str, Callable[[BinaryIO], object]]) -> list[Path]:
    """Write every ``name -> fill`` into folder ``where`` (below ``root``, no symlink on the way) as one unit."""
    paths = [where / name for name in fills]
    for name in fills:
        if name in ("", ".", "..") or "/" in name:
            raise ConfigError(f"refusing to write {shown(where / name)}: not a plain file name")
    fd = _open_folder(root, _parts(root, where), True, where)
    staged: dict[str, str] = {}
    try:
        for name in fills:
            _check_name(fd, name, where / name)
        for name, fill in fills.items():
            try:
                staged[name] = _stage(fd, name, fill)
            except OSError as exc:
                raise failed_write(where / name, exc) from None
        for name, tmp in list(staged.items()):
            os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
            del staged[name]
        os.fsync(fd)
    except OSError as exc:
        raise failed_write(where, exc) from None
    finally:
        for tmp in staged.values():
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=fd)
        os.close(fd)
    return paths


def write_bytes(path: str | os.PathLike[str], data: bytes, *, root: str | os.PathLike[str] | None = None) -> Path:
    """Write ``data`` to ``path`` atomically (a temporary file beside it, then a rename), never through a symlink
    at any component below ``root`` (default: the file's folder) nor onto anything but a regular file."""
    path = Path(path)
    return _write_all(Path(root) if root is not None else path.parent, path.parent, {path.name: _filler(data)})[0]


def write_text(path: str | os.PathLike[str], text: str, *, root: str | os.PathLike[str] | None = None) -> Path:
    return write_bytes(path, text.encode("utf-8"), root=root)


def write_file(path: str | os.PathLike[str], data: str | bytes, *, root: str | os.PathLike[str] | None = None) -> Path:
    """:func:`write_text` or :func:`write_bytes`, by the type of ``data``."""
    return write_text(path, data, root=root) if isinstance(data, str) else write_bytes(path, data, root=root)


def save_figure(fig: Any, path: str | os.PathLike[str], **kwargs: Any) -> Path:
    """A matplotlib figure written as :func:`write_bytes` writes (see :meth:`Batch.figure`)."""
    path = Path(path)
    batch = Batch(path.parent)
    batch.figure(fig, path.name, **kwargs)
    return batch.commit()[0]


def append_to(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> TextIO:
    """``path`` opened for appending text (created when missing), never through a symlink at any component
    below ``root``, and only if it is a regular file: for a log written line by line as it happens."""
    path, root = Path(path), Path(root)
    fd = _open_folder(root, _parts(root, path.parent), True, path.parent)
    try:
        handle = os.open(path.name, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644, dir_fd=fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigError(f"refusing to write {shown(path)}: it is a symlink, not a regular file") from None
        raise failed_write(path, exc) from None
    finally:
        os.close(fd)
    if not stat.S_ISREG(os.fstat(handle).st_mode):
        os.close(handle)
        raise ConfigError(f"refusing to write {shown(path)}: it is not a regular file")
    return open(handle, "a", encoding="utf-8")  # noqa: SIM115 - the caller closes it


def usable_folder(path: str | os.PathLike[str], what: str, *, root: str | os.PathLike[str] | None = None) -> Path:
    """Check, before any work, a folder about to be written (created if missing): ConfigError when it is a file
    or a device, a symlink below ``root``, cannot be created, is read-only, or its disk is full."""
    path = Path(path)
    if not str(path).strip():
        raise ConfigError(f"invalid {what} '': a folder must not be empty")
    if "\x00" in str(path):
        raise ConfigError(f"invalid {what} {str(path)!r}: a path cannot hold a NUL character")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} {shown(path)} is not a folder (it is a {_kind(path)})")
    parent = path if path.exists() else next((p for p in path.absolute().parents if p.exists()), None)
    if parent is None or not parent.is_dir() or not writable(parent):
        raise ConfigError(
            f"{what} {shown(path)} is not writable ({shown(parent or path)} is read-only or not a folder)"
        )
    if root is not None:
        folder(root, *_parts(Path(root), path))
    else:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise failed_write(path, exc) from None
    usage = os.statvfs(path)
    if usage.f_bavail * usage.f_frsize < 64 * 1024:
        raise ConfigError(f"{what} {shown(path)} is not writable: its disk is full")
    return path


def read_bytes(path: str | os.PathLike[str], what: str, limit: int = MAX_INPUT_BYTES) -> bytes:
    """A user's file, refused (ConfigError, one line naming ``what``) unless it is a regular file of at most
    ``limit`` bytes."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"no {what} {shown(path)}")
    if not path.is_file():
        raise ConfigError(f"cannot read {what} {shown(path)}: it is a {_kind(path)}, not a regular file")
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {shown(path)}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise ConfigError(f"cannot read {what} {shown(path)}: larger than {limit // (1024 * 1024)} MiB")
    return data


def read_text(path: str | os.PathLike[str], what: str, limit: int = MAX_INPUT_BYTES) -> str:
    """A user's UTF-8 text file, refused as :func:`read_bytes` refuses it, or when it is not UTF-8."""
    data = read_bytes(path, what, limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read {what} {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def md_cell(value: Any) -> str:
    """One Markdown table cell: raw HTML escaped, ``|`` escaped, newlines and tabs as spaces."""
    text = html.escape(str(value), quote=False)
    return " ".join(text.replace("|", "\\|").split())

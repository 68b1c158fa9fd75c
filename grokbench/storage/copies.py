"""A store copied or moved as one unit: its file and its folders (``<store>.checkpoints``, ``<store>.logs``).

Everything is checked before anything is written (an existing destination, a symlink among the store's own
entries, a run still training, a destination inside the source's folders: ConfigError). The copy is assembled in
a hidden folder beside the destination (the database through SQLite's backup API, so a store in WAL mode is copied
consistently; every file flushed to disk), then its folders are renamed into place and the database linked in last,
without replacing anything: the destination store exists only once it is complete. A failure removes what was
placed. A move removes the source only after its copy is complete, holding the source's write lock throughout.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from grokbench.errors import ConfigError
from grokbench.files import writable
from grokbench.storage.store import FOLDERS, Store

#: SQLite's files beside a database
SIDE_FILES = ("-wal", "-shm", "-journal")


@dataclass
class Copied:
    """What :func:`copy_store` copied."""

    source: Path
    destination: Path
    runs: int
    files: int
    bytes: int


def copy_store(source: Store, destination: str | os.PathLike[str], *, move: bool = False) -> Copied:
    """Copy (``move``: move) the store ``source`` with its folders to ``destination``; see the module docstring."""
    if not str(destination).strip():
        raise ConfigError("invalid destination '': a store path must not be empty")
    src, dst = source.path, Path(destination)
    folders = {kind: source.folder(kind) for kind in FOLDERS if source.folder(kind).is_dir()}
    _check(source, dst, folders, move)
    stage = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".copying", dir=dst.parent))
    placed: list[tuple[Path, Path]] = []
    with closing(source.connect()) as guard:
        if move:  # no other process writes the source until it is gone
            guard.isolation_level = None
            guard.execute("BEGIN IMMEDIATE")
            _refuse_running(source)
        try:
            files, size = _assemble(source, folders, stage)
            for kind in folders:
                target = Path(f"{dst}.{kind}")
                if os.path.lexists(target):
                    raise ConfigError(f"refusing to copy the store to {dst}: {target} appeared while copying")
                os.rename(stage / kind, target)
                placed.append((target, stage / kind))
            try:
                os.link(stage / "store", dst)  # never replaces: fails when dst exists
            except FileExistsError:
                raise ConfigError(f"refusing to copy the store to {dst}: it appeared while copying") from None
            _fsync_dir(dst.parent)
        except BaseException:
            for target, back in reversed(placed):
                os.rename(target, back)
            raise
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        if move:
            for folder in folders.values():
                shutil.rmtree(folder)
            for side in ("", *SIDE_FILES):
                Path(f"{src}{side}").unlink(missing_ok=True)
            guard.execute("ROLLBACK")
    if move:
        _fsync_dir(src.absolute().parent)
    return Copied(src, dst, len(Store(dst, create=False).runs()), files, size)


def _check(source: Store, dst: Path, folders: dict[str, Path], move: bool) -> None:
    src = source.path
    if src.is_symlink():
        raise ConfigError(f"refusing to copy {src}: it is a symlink (name the store file itself)")
    if move and source.readonly:
        raise ConfigError(f"cannot move the store {src}: it is read-only")
    for path in (dst, *(Path(f"{dst}{side}") for side in SIDE_FILES), *(Path(f"{dst}.{k}") for k in FOLDERS)):
        if os.path.lexists(path):
            raise ConfigError(f"refusing to copy the store to {dst}: {path} exists (a copy never replaces anything)")
    parent = dst.parent
    if not parent.is_dir():
        raise ConfigError(f"cannot copy the store to {dst}: directory {parent} does not exist")
    if not writable(parent):
        raise ConfigError(f"cannot copy the store to {dst}: directory {parent} is not writable")
    inside = Path(os.path.realpath(parent))
    for folder in folders.values():
        if inside.is_relative_to(Path(os.path.realpath(folder))):
            raise ConfigError(f"refusing to copy the store to {dst}: it is inside the store's own folder {folder}")
    for folder in folders.values():
        for top, dirs, files in os.walk(folder):
            for name in dirs + files:
                path = Path(top) / name
                if path.is_symlink() or not (path.is_dir() or path.is_file()):
                    kind = "a symlink" if path.is_symlink() else "not a regular file"
                    raise ConfigError(
                        f"refusing to copy the store {src}: {path} is {kind} (a store holds only its own files)"
                    )
    _refuse_running(source)


def _refuse_running(source: Store) -> None:
    running = source.running()
    if running:
        first = running[0]
        raise ConfigError(
            f"refusing to copy the store {source.path}: {len(running)} run(s) still training (run {first['id']}, "
            f"pid {first['pid']} on {first['host']}); copy it when they end"
        )


def _assemble(source: Store, folders: dict[str, Path], stage: Path) -> tuple[int, int]:
    """The copy in ``stage``: ``store`` (the database) and one folder per store folder; files and bytes copied."""
    with closing(source.connect()) as conn, closing(sqlite3.connect(stage / "store")) as out:
        conn.backup(out)
        out.execute("PRAGMA journal_mode = WAL")
    with open(stage / "store", "rb") as f:
        os.fsync(f.fileno())
    files, size = 1, (stage / "store").stat().st_size
    for kind, folder in folders.items():
        for top, _dirs, names in os.walk(folder):
            here = stage / kind / Path(top).relative_to(folder)
            here.mkdir()
            for name in sorted(names):
                size += _copy_file(Path(top) / name, here / name)
                files += 1
            _fsync_dir(here)
    return files, size


def _copy_file(src: Path, dst: Path) -> int:
    """Copy one regular file (never through a symlink: the source is opened without following one), flushed."""
    fd = os.open(src, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as f, open(dst, "xb") as g:
        shutil.copyfileobj(f, g, 1 << 20)
        g.flush()
        os.fsync(g.fileno())
        return g.tell()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

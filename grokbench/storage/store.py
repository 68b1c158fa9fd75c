"""The results store: one SQLite file (WAL), a versioned schema with migrations, transactional writes.

A run is written in one transaction when it ends (:meth:`Store.save_run`: what a suite driver does), or while
it trains (:mod:`grokbench.recording.live`: a ``running`` row, then each evaluation's curve points in a short
transaction of their own, then the final row), so an interrupted run keeps its curves. Curves are in long
format (run, step, name, value). ``PRAGMA application_id`` marks the file
as a grokbench store; ``PRAGMA user_version`` is its schema version.

A store is its file and its folders beside it, ``<store>.checkpoints`` and ``<store>.logs``: every path it records
is relative to the store (``checkpoints/RUN/step-S.safetensors`` is ``<store>.checkpoints/RUN/step-S.safetensors``
wherever the store is opened), so the three move, copy and rename together (:mod:`grokbench.storage.copies`).
A store reads and writes only inside its folders, never through a symlink below them.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from contextlib import closing
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from grokbench.errors import ConfigError, StoreError
from grokbench.files import writable

if TYPE_CHECKING:  # imported by the methods that read frames: a run's start writes to the store without it
    import pandas as pd

APPLICATION_ID = 0x47524F4B  # "GROK"
DEFAULT_PATH = "grokbench.db"
STORE_ENV = "GROKBENCH_STORE"

#: the folders of a store, beside its file: ``<store>.checkpoints``, ``<store>.logs``
FOLDERS = ("checkpoints", "logs")


def _relative_paths(conn: sqlite3.Connection, path: Path) -> None:
    """v4: checkpoint paths recorded relative to the store. An absolute path inside the store's own folders (where
    it is being migrated) is rewritten; any other is refused, and the migration rolled back."""
    own = {kind: _absolute_forms(Path(f"{path}.{kind}")) for kind in FOLDERS}
    rows = conn.execute("SELECT run_id, step, path FROM checkpoints").fetchall()
    for run_id, step, recorded in rows:
        if not PurePosixPath(recorded).is_absolute():
            continue  # checked with every other path when the store is opened
        rewritten = next(
            (
                PurePosixPath(kind, Path(recorded).relative_to(folder)).as_posix()
                for kind, forms in own.items()
                for folder in forms
                if Path(recorded).is_relative_to(folder)
            ),
            None,
        )
        if rewritten is None or _inside(rewritten) is None:
            raise ConfigError(
                f"{path} records checkpoint {recorded} (run {run_id}, step {step}) outside its own folder "
                f"{path}.checkpoints: it was copied without being migrated; open it once where it was written, "
                f"then move it with 'grokbench store copy'"
            )
        conn.execute("UPDATE checkpoints SET path = ? WHERE run_id = ? AND step = ?", (rewritten, run_id, step))


def _inside(recorded: str) -> tuple[str, ...] | None:
    """A recorded path's parts when it names a file inside one of the store's folders (``checkpoints/...``),
    else None: absolute, ``..``, empty parts, another first part."""
    parts = tuple(recorded.split("/"))
    if len(parts) < 2 or parts[0] not in FOLDERS or "\x00" in recorded:
        return None
    if any(p in ("", ".", "..") for p in parts):
        return None
    return parts


def _absolute_forms(folder: Path) -> list[Path]:
    """A folder as an absolute path, and with its symlinks resolved (an older grokbench recorded the latter)."""
    return list(dict.fromkeys([folder.absolute(), Path(os.path.realpath(folder))]))


#: MIGRATIONS[i] upgrades a store from schema version i to i + 1: SQL, or a function of the connection and
#: the store's path (run inside the migration's transaction).
MIGRATIONS: list[str | Callable[[sqlite3.Connection, Path], None]] = [
    """
    CREATE TABLE runs (
        id              TEXT PRIMARY KEY,
        created_at      TEXT NOT NULL,
        config_hash     TEXT NOT NULL,
        config          TEXT NOT NULL,
        task            TEXT NOT NULL,
        model           TEXT NOT NULL,
        regularizer     TEXT NOT NULL,
        optimizer       TEXT NOT NULL,
        preset          TEXT,
        seed            INTEGER NOT NULL,
        status          TEXT NOT NULL,
        message         TEXT,
        steps           INTEGER,
        t_memorize      INTEGER,
        t_generalize    INTEGER,
        final_train_acc REAL,
        final_test_acc  REAL,
        wall_seconds    REAL,
        summary         TEXT NOT NULL,
        plugins         TEXT NOT NULL,
        environment     TEXT NOT NULL
    );
    CREATE INDEX runs_config_hash ON runs (config_hash);
    CREATE TABLE curves (
        run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        step   INTEGER NOT NULL,
        name   TEXT NOT NULL,
        value  REAL,
        PRIMARY KEY (run_id, name, step)
    ) WITHOUT ROWID;
    """,
    # v2: suites. A run remembers the suite that produced it; a suite stores each config at most once
    # (the partial unique index), and records its planned runs by entry (a config may serve several entries).
    """
    ALTER TABLE runs ADD COLUMN suite TEXT;
    CREATE UNIQUE INDEX runs_suite_config_once ON runs (config_hash) WHERE suite IS NOT NULL;
    CREATE TABLE suites (
        name       TEXT PRIMARY KEY,
        source     TEXT,
        spec       TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE suite_members (
        suite       TEXT NOT NULL REFERENCES suites (name) ON DELETE CASCADE,
        entry       TEXT NOT NULL,
        config_hash TEXT NOT NULL,
        position    INTEGER NOT NULL,
        PRIMARY KEY (suite, entry, config_hash)
    ) WITHOUT ROWID;
    CREATE INDEX suite_members_config_hash ON suite_members (config_hash);
    """,
    # v3: a failed run keeps the full traceback of its exception (`grokbench show RUN --traceback`); a run is
    # written while it trains (status 'running', with the pid and host of the process that trains it and a heartbeat at each evaluation, so that a process that died without a word is recognized),
    # and its checkpoints are recorded (safetensors files next to the store; see grokbench.recording.checkpoints).
    """
    ALTER TABLE runs ADD COLUMN traceback TEXT;
    ALTER TABLE runs ADD COLUMN pid INTEGER;
    ALTER TABLE runs ADD COLUMN host TEXT;
    ALTER TABLE runs ADD COLUMN heartbeat TEXT;
    CREATE INDEX runs_status ON runs (status);
    CREATE TABLE checkpoints (
        run_id     TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        step       INTEGER NOT NULL,
        reasons    TEXT NOT NULL,
        path       TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (run_id, step)
    ) WITHOUT ROWID;
    """,
    # v4: the paths a store records are relative to the store (see the module docstring)
    _relative_paths,
    # v5: step costs measured side by side in one process (a benchmark's cost-adjusted time): CPU seconds per
    # step of a run configuration and of the reference's configuration on the same track, and their environment
    """
    CREATE TABLE step_costs (
        config_hash           TEXT NOT NULL,
        reference_hash        TEXT NOT NULL,
        seconds               REAL NOT NULL,
        reference_seconds     REAL NOT NULL,
        steps                 INTEGER NOT NULL,
        repeats               INTEGER NOT NULL,
        environment           TEXT NOT NULL,
        measured_at           TEXT NOT NULL,
        PRIMARY KEY (config_hash, reference_hash)
    ) WITHOUT ROWID;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)

SUMMARY_COLUMNS = ("steps", "t_memorize", "t_generalize", "final_train_acc", "final_test_acc", "wall_seconds")


def default_path() -> Path:
    return Path(os.environ.get(STORE_ENV) or DEFAULT_PATH)


class Store:
    """A grokbench results store at ``path``.

    An existing file is checked (and migrated) on opening; a missing one is
    created on the first write, or refused at once when ``create`` is false.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, create: bool = True):
        if path is not None and not str(path).strip():
            raise ConfigError("invalid store '': a store path must not be empty")
        self.path = Path(path) if path is not None else default_path()
        self._live: sqlite3.Connection | None = None  # the connection of a run written while it trains
        self.readonly = False  # a reader of a store it cannot write opens it read-only
        self._checked = False
        if not self.path.exists():
            if not create:
                raise ConfigError(f"no results store at {self.path} (run 'grokbench run' first, or pass --store)")
            if not self.path.parent.is_dir():
                raise ConfigError(f"cannot create the store {self.path}: directory {self.path.parent} does not exist")
            if not writable(self.path.parent):
                raise ConfigError(f"cannot create the store {self.path}: directory {self.path.parent} is not writable")
        elif self.path.is_dir():
            raise ConfigError(f"{self.path} is a directory, not a grokbench store")
        elif not self.path.is_file():
            raise ConfigError(f"{self.path} is not a regular file, not a grokbench store")
        else:
            can_write = writable(self.path) and writable(self.path.parent)
            if create and not can_write:
                raise ConfigError(
                    f"the store {self.path} is read-only (it and its directory must be writable: SQLite keeps "
                    f"-wal and -shm files beside it); nothing was run"
                )
            if not create and self.path.stat().st_size == 0:
                raise ConfigError(f"{self.path} is an empty file, not a grokbench store")
            self.readonly = not can_write
            self._check_folders()
            self._check_or_migrate()
        if not self.path.exists():
            self._check_folders()

    # ------------------------------------------------------------------ its folders

    def folder(self, kind: str) -> Path:
        """``<store>.checkpoints`` or ``<store>.logs``: where the store is opened now."""
        if kind not in FOLDERS:
            raise ValueError(f"a store has no folder '{kind}'")
        return Path(f"{self.path}.{kind}")

    def _check_folders(self) -> None:
        """Refuse a store whose folder is a symlink or not a folder: a store reads and writes only inside its own."""
        for kind in FOLDERS:
            folder = self.folder(kind)
            if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
                raise ConfigError(
                    f"the store's folder {folder} is a {'symlink' if folder.is_symlink() else 'file'}, not a "
                    f"folder: a store reads and writes only inside its own folders (remove it or move the store)"
                )

    def locate(self, recorded: str) -> Path:
        """The file a recorded path names, where the store is opened now. ConfigError for a recorded path that
        is not inside one of the store's folders, or whose folders below the store's are symlinks."""
        parts = _inside(recorded)
        if parts is None:
            raise self._outside(recorded)
        path = self.folder(parts[0])
        for part in parts[1:]:
            if path.is_symlink():
                break
            path = path / part
        if path.is_symlink():
            raise ConfigError(
                f"refusing {path}: it is a symlink inside the store's folders (a store never reads or writes "
                f"through one)"
            )
        return path

    def _outside(self, recorded: str) -> ConfigError:
        return ConfigError(
            f"{self.path} records the path '{recorded}', which is not inside its own folders (a store records "
            f"paths relative to itself: {', '.join(f'{k}/...' for k in FOLDERS)}); refusing it"
        )

    def recorded(self, path: str | os.PathLike[str]) -> str:
        """The path to record for a file inside the store's folders: relative to the store."""
        path = Path(path)
        for kind in FOLDERS:
            if path.is_relative_to(self.folder(kind)):
                return PurePosixPath(kind, *path.relative_to(self.folder(kind)).parts).as_posix()
        raise ValueError(f"{path} is not inside the folders of the store {self.path}")

    def prepare(self, kind: str, *parts: str) -> Path:
        """The path of a file to write in a store folder (``parts``: below it), its folders created: none of them
        may be a symlink (ConfigError)."""
        path = self.folder(kind)
        for part in ("", *parts[:-1]):
            path = path / part if part else path
            try:
                path.mkdir(exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the folder {path}: {exc.strerror or exc}") from None
            if path.is_symlink() or not path.is_dir():
                raise ConfigError(f"refusing to write into {path}: it is a symlink or a file, not a folder")
        return self.locate(PurePosixPath(kind, *parts).as_posix())

    def quick_check(self) -> list[str]:
        """SQLite's ``PRAGMA quick_check`` of the file: ``["ok"]`` when its structure is sound."""
        with closing(self.connect()) as conn:
            return [r[0] for r in conn.execute("PRAGMA quick_check")]

    def _ensure(self) -> None:
        """Create the file (with the current schema) on the first write; check it once."""
        if not self._checked:
            self._check_or_migrate()

    def connect(self) -> sqlite3.Connection:
        if self.readonly:  # read-only: no -wal/-shm is created; immutable when even the lock files cannot be
            uri = self.path.resolve().as_uri()
            conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=30)
            try:
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.OperationalError:
                conn.close()
                conn = sqlite3.connect(f"{uri}?immutable=1", uri=True)
        else:
            conn = sqlite3.connect(self.path, timeout=30)
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def _check_or_migrate(self) -> None:
        try:
            with closing(self.connect()) as conn:
                # one read transaction, so that the three reads see one state: read one by one, they could
                # see another process's creation half (no id yet, then its tables) and call the file foreign
                conn.execute("BEGIN")
                app_id = conn.execute("PRAGMA application_id").fetchone()[0]
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                has_tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] > 0
                conn.execute("COMMIT")
                if app_id != APPLICATION_ID and (has_tables or version):
                    raise ConfigError(f"{self.path} is not a grokbench store")
                if version > SCHEMA_VERSION:
                    raise ConfigError(
                        f"{self.path} has schema version {version}, newer than this grokbench supports "
                        f"({SCHEMA_VERSION}); upgrade grokbench"
                    )
                if version < SCHEMA_VERSION and self.readonly:
                    raise ConfigError(
                        f"{self.path} is read-only and has schema version {version}: it needs a migration to "
                        f"{SCHEMA_VERSION}, which cannot be written"
                    )
                if version < SCHEMA_VERSION:
                    self._migrate(conn, version)
                self._check_paths(conn)
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"{self.path} is not a grokbench store ({exc})") from None
        self._checked = True

    def _check_paths(self, conn: sqlite3.Connection) -> None:
        """Refuse a store that records a path outside its own folders (see :meth:`locate`)."""
        if conn.execute("PRAGMA user_version").fetchone()[0] < 3:  # no checkpoints table yet: nothing recorded
            return
        for (recorded,) in conn.execute("SELECT path FROM checkpoints"):
            if _inside(recorded) is None:
                raise self._outside(recorded)

    def _migrate(self, conn: sqlite3.Connection, version: int) -> None:
        """Migrate under BEGIN IMMEDIATE (several processes may create one store at once: the busy timeout
        makes the others wait, and they find the work done), then switch to WAL. A migration that refuses the
        store (ConfigError) is rolled back: the store is left as it was."""
        conn.isolation_level = None  # explicit BEGIN/COMMIT: DDL inside one transaction
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = conn.execute("PRAGMA user_version").fetchone()[0]  # another process may have migrated
            for target in range(current, SCHEMA_VERSION):
                step = MIGRATIONS[target]
                if callable(step):
                    step(conn, self.path)
                    continue
                for statement in step.split(";"):
                    if statement.strip():
                        conn.execute(statement)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        for attempt in range(100):  # switching to WAL takes an exclusive lock, for which no busy handler waits
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError:
                if attempt == 99:
                    raise
                time.sleep(0.05)

    # ------------------------------------------------------------------ writing

    def save_run(
        self, run: dict[str, Any], curves: Iterable[dict[str, float]], *, replace_failed: bool = False
    ) -> bool:
        """Insert a run and its curves atomically.

        Returns False (and writes nothing) when the run belongs to a suite and a run of the same
        configuration is already stored by a suite: a suite never stores a configuration twice.
        With ``replace_failed``, a *failed* suite run of the configuration gives way instead, in the
        same transaction: it stays in the store, with its error, as a run of no suite.
        """
        row = dict(run)
        for key in ("config", "summary", "plugins", "environment"):
            row[key] = json.dumps(row[key], sort_keys=True)
        columns = ", ".join(row)
        marks = ", ".join(f":{k}" for k in row)
        points = [
            (run["id"], int(r["step"]), name, _real(value))
            for r in curves
            for name, value in r.items()
            if name != "step"
        ]
        self._ensure()
        try:
            with closing(self.connect()) as conn, conn:
                if row.get("suite") is not None:  # an interrupted suite run (and a failed one, when retried) gives way
                    gives_way = "('interrupted', 'failed')" if replace_failed else "('interrupted')"
                    conn.execute(
                        f"UPDATE runs SET suite = NULL WHERE config_hash = ? AND suite IS NOT NULL AND status IN {gives_way}",
                        (row["config_hash"],),
                    )
                conn.execute(f"INSERT INTO runs ({columns}) VALUES ({marks})", row)
                conn.executemany("INSERT INTO curves (run_id, step, name, value) VALUES (?, ?, ?, ?)", points)
        except sqlite3.IntegrityError as exc:
            if row.get("suite") is not None and "runs.config_hash" in str(exc):
                return False  # another driver stored this config first: keep that one
            raise
        except sqlite3.OperationalError as exc:  # a full disk, a read-only file system: rolled back
            raise StoreError(f"cannot write run {run['id']} to the store {self.path}: {exc}") from None
        return True

    def register_suite(
        self, name: str, source: str | None, spec: dict[str, Any], members: Iterable[tuple[str, str]]
    ) -> None:
        """Record a suite and its planned runs ``(entry, config_hash)``, replacing an earlier plan of that name."""
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
        self._ensure()
        try:
            self._register_suite(name, source, spec, members, now)
        except sqlite3.OperationalError as exc:
            raise StoreError(f"cannot write suite '{name}' to the store {self.path}: {exc}") from None

    def _register_suite(
        self, name: str, source: str | None, spec: dict[str, Any], members: Iterable[tuple[str, str]], now: str
    ) -> None:
        with closing(self.connect()) as conn, conn:
            conn.execute(
                "INSERT INTO suites (name, source, spec, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET source = excluded.source, spec = excluded.spec, updated_at = excluded.updated_at",
                (name, source, json.dumps(spec, sort_keys=True), now),
            )
            conn.execute("DELETE FROM suite_members WHERE suite = ?", (name,))
            conn.executemany(
                "INSERT OR IGNORE INTO suite_members (suite, entry, config_hash, position) VALUES (?, ?, ?, ?)",
                [(name, entry, h, i) for i, (entry, h) in enumerate(members)],
            )

    def save_step_cost(
        self,
        config_hash: str,
        reference_hash: str,
        seconds: float,
        reference_seconds: float,
        *,
        steps: int,
        repeats: int,
        environment: dict[str, Any],
    ) -> None:
        """Record one side-by-side measurement of CPU seconds per step (replacing an earlier one of the pair)."""
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
        self._ensure()
        with closing(self.connect()) as conn, conn:
            conn.execute(
                "INSERT OR REPLACE INTO step_costs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    config_hash,
                    reference_hash,
                    seconds,
                    reference_seconds,
                    steps,
                    repeats,
                    json.dumps(environment, sort_keys=True),
                    now,
                ),
            )

    def step_costs(self) -> pd.DataFrame:
        """Every side-by-side step-cost measurement, with ``ratio`` = seconds ÷ reference_seconds."""
        import pandas as pd

        with closing(self.connect()) as conn:
            frame = pd.read_sql_query("SELECT * FROM step_costs ORDER BY config_hash, reference_hash", conn)
        frame["ratio"] = frame["seconds"] / frame["reference_seconds"]
        return frame

    def stored_hashes(self, hashes: Iterable[str], *, failed: bool = True) -> set[str]:
        """The config hashes among ``hashes`` that have a stored run (interrupted and running ones are not done;
        ``failed=False``: failed ones are not done either)."""
        wanted = list(dict.fromkeys(hashes))
        if not self.path.exists() or not wanted:
            return set()
        self._ensure()  # another process may be creating it right now
        with closing(self.connect()) as conn:
            conn.execute("CREATE TEMP TABLE wanted (h TEXT PRIMARY KEY)")
            conn.executemany("INSERT OR IGNORE INTO wanted VALUES (?)", [(h,) for h in wanted])
            where = " WHERE runs.status NOT IN ('interrupted', 'running'" + ("" if failed else ", 'failed'") + ")"
            rows = conn.execute(
                f"SELECT DISTINCT config_hash FROM runs JOIN wanted ON runs.config_hash = wanted.h{where}"
            ).fetchall()
        return {r[0] for r in rows}

    # ------------------------------------------------------------------ a run written while it trains

    def begin_run(self, run: dict[str, Any], *, replace_failed: bool = False) -> bool:
        """Insert a run row with status ``running`` (with ``pid``, ``host``, ``heartbeat``), before its first evaluation;
        False (nothing written) when a suite already stored its configuration, as :meth:`save_run`."""
        return self.save_run(run, (), replace_failed=replace_failed)

    def append_evaluation(self, run_id: str, record: dict[str, float], heartbeat: str) -> None:
        """One evaluation's curve points, in a short transaction of their own, and the run's heartbeat.

        On one connection kept open for the run, with ``synchronous = NORMAL`` (WAL): a commit survives the
        process being killed, and costs no fsync (closing a connection per evaluation cost ~45 ms each)."""
        step = int(record["step"])
        points = [(run_id, step, name, _real(value)) for name, value in record.items() if name != "step"]
        conn = self._live
        if conn is None:
            conn = self._live = self.connect()
            conn.execute("PRAGMA synchronous = NORMAL")
        with conn:
            conn.executemany("INSERT OR REPLACE INTO curves (run_id, step, name, value) VALUES (?, ?, ?, ?)", points)
            conn.execute("UPDATE runs SET steps = ?, heartbeat = ? WHERE id = ?", (step, heartbeat, run_id))

    def close_live(self) -> None:
        """Close the connection :meth:`append_evaluation` kept open."""
        conn = self._live
        if conn is not None:
            conn.close()
            self._live = None

    def update_run(
        self, run_id: str, fields: dict[str, Any], *, drop_curves_from: int | None = None, claim: bool = False
    ) -> bool:
        """Set columns of a stored run (JSON ones encoded); ``drop_curves_from``: delete its curve points from that
        step on. With ``claim`` (a run resumed), only a run that is not ``running`` is changed, in one transaction:
        False, with nothing written, when another process is training it."""
        row = {
            k: json.dumps(v, sort_keys=True) if k in ("config", "summary", "plugins", "environment") else v
            for k, v in fields.items()
        }
        unless_running = " AND status != 'running'" if claim else ""
        with closing(self.connect()) as conn, conn:
            changed = conn.execute(
                f"UPDATE runs SET {', '.join(f'{k} = :{k}' for k in row)} WHERE id = :_id{unless_running}",
                {**row, "_id": run_id},
            ).rowcount
            if changed and drop_curves_from is not None:
                conn.execute("DELETE FROM curves WHERE run_id = ? AND step >= ?", (run_id, drop_curves_from))
        return bool(changed)

    def resumable(self, suite: str, hashes: Iterable[str]) -> dict[str, tuple[str, int]]:
        """For each config hash among ``hashes`` whose run in ``suite`` is ``interrupted`` with a checkpoint: that
        run's id and the step of its last checkpoint (the newest such run where there are several)."""
        wanted = set(hashes)
        if not wanted or not self.path.exists():
            return {}
        with closing(self.connect()) as conn:
            rows = conn.execute(
                "SELECT runs.config_hash, runs.id, MAX(checkpoints.step) FROM runs "
                "JOIN checkpoints ON checkpoints.run_id = runs.id "
                "WHERE runs.suite = ? AND runs.status = 'interrupted' GROUP BY runs.id ORDER BY runs.created_at",
                (suite,),
            ).fetchall()
        return {h: (run_id, int(step)) for h, run_id, step in rows if h in wanted}

    def suite_runs_since(self, suite: str, since: str, status: str) -> set[str]:
        """The ids of ``suite``'s runs with ``status`` created at or after ``since`` (an ISO UTC time)."""
        with closing(self.connect()) as conn:
            rows = conn.execute(
                "SELECT id FROM runs WHERE suite = ? AND status = ? AND created_at >= ?", (suite, status, since)
            )
            return {r[0] for r in rows}

    def running(self) -> list[dict[str, Any]]:
        """Runs stored as ``running``: id, pid, host, heartbeat."""
        with closing(self.connect()) as conn:
            conn.row_factory = sqlite3.Row
            if conn.execute("PRAGMA user_version").fetchone()[0] < 3:  # no run can be running in an older schema
                return []
            return [
                dict(r)
                for r in conn.execute("SELECT id, pid, host, heartbeat, config FROM runs WHERE status = 'running'")
            ]

    def add_checkpoint(
        self, run_id: str, step: int, reasons: list[str], path: str | os.PathLike[str], created_at: str
    ) -> None:
        """Record a checkpoint file written inside the store's folders (its path recorded relative to the store)."""
        with closing(self.connect()) as conn, conn:
            conn.execute(
                "INSERT OR REPLACE INTO checkpoints (run_id, step, reasons, path, created_at) VALUES (?, ?, ?, ?, ?)",
                (run_id, step, json.dumps(reasons), self.recorded(path), created_at),
            )

    def checkpoints(self, run_id: str | None = None, *, locate: bool = True) -> list[dict[str, Any]]:
        """A run's checkpoints (every run's without ``run_id``), by run and step: run_id, step, reasons, created_at,
        ``recorded`` (the path as stored) and ``path`` (where that file is with the store opened here; the
        recorded path again without ``locate``, for a caller that locates each file itself)."""
        where, params = ("WHERE run_id = ?", (run_id,)) if run_id is not None else ("", ())
        with closing(self.connect()) as conn:
            conn.row_factory = sqlite3.Row
            rows = conn.execute(
                f"SELECT run_id, step, reasons, path, created_at FROM checkpoints {where} ORDER BY run_id, step",
                params,
            ).fetchall()
        return [
            {
                **dict(r),
                "reasons": json.loads(r["reasons"]),
                "recorded": r["path"],
                "path": self.locate(r["path"]) if locate else r["path"],
            }
            for r in rows
        ]

    def suites(self) -> pd.DataFrame:
        import pandas as pd

        with closing(self.connect()) as conn:
            return pd.read_sql_query("SELECT name, source, updated_at FROM suites ORDER BY name", conn)

    def suite_spec(self, name: str) -> dict[str, Any]:
        with closing(self.connect()) as conn:
            row = conn.execute("SELECT spec FROM suites WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise ConfigError(f"no suite '{name}' in {self.path}" + _known(self.suites()["name"]))
        return json.loads(row[0])

    def suite_members(self, name: str) -> list[tuple[str, str]]:
        """A suite's planned runs ``(entry, config_hash)`` in their order (stored or not)."""
        self.suite_spec(name)  # an unknown suite is bad input
        with closing(self.connect()) as conn:
            rows = conn.execute(
                "SELECT entry, config_hash FROM suite_members WHERE suite = ? ORDER BY position", (name,)
            ).fetchall()
        return [(str(e), str(h)) for e, h in rows]

    def records(self, suite: str | None = None) -> pd.DataFrame:
        """Runs with every column and JSON decoded, plus ``entry`` and ``member_of`` (suite) for suite members.

        With ``suite``, only that suite's planned runs that are stored (the newest run of each config);
        without, every run, labelled by the suite entry that planned it where one did.
        """
        import pandas as pd

        if suite is not None:
            self.suite_spec(suite)  # an unknown suite is bad input
            query = (
                "SELECT runs.*, m.entry AS entry, m.suite AS member_of, m.position AS position FROM suite_members m "
                "JOIN runs ON runs.id = (SELECT id FROM runs r WHERE r.config_hash = m.config_hash "
                "ORDER BY r.created_at DESC, r.id LIMIT 1) WHERE m.suite = ? ORDER BY m.position"
            )
            params: tuple[Any, ...] = (suite,)
        else:
            query = (
                "SELECT runs.*, m.entry AS entry, m.suite AS member_of, m.position AS position FROM runs "
                "LEFT JOIN suite_members m ON m.config_hash = runs.config_hash ORDER BY m.suite, m.position, runs.created_at"
            )
            params = ()
        with closing(self.connect()) as conn:
            frame = pd.read_sql_query(query, conn, params=params)
        for key in ("config", "summary", "plugins", "environment"):
            frame[key] = frame[key].map(json.loads)
        return frame

    def curves_long(self, run_ids: Iterable[str]) -> pd.DataFrame:
        """Curves of several runs in long format: run_id, step, name, value."""
        import pandas as pd

        ids = list(run_ids)
        with closing(self.connect()) as conn:
            if not ids:
                return pd.read_sql_query("SELECT run_id, step, name, value FROM curves WHERE 0", conn)
            conn.execute("CREATE TEMP TABLE wanted (id TEXT PRIMARY KEY)")
            conn.executemany("INSERT OR IGNORE INTO wanted VALUES (?)", [(i,) for i in ids])
            return pd.read_sql_query(
                "SELECT run_id, step, name, value FROM curves JOIN wanted ON curves.run_id = wanted.id ORDER BY run_id, name, step",
                conn,
            )

    # ------------------------------------------------------------------ reading

    def runs(self, limit: int | None = None) -> pd.DataFrame:
        import pandas as pd

        query = (
            "SELECT id, created_at, task, model, regularizer, optimizer, preset, seed, status, "
            + ", ".join(SUMMARY_COLUMNS)
            + " FROM runs ORDER BY created_at DESC, id"
        )
        if limit:
            query += f" LIMIT {int(limit)}"
        with closing(self.connect()) as conn:
            return pd.read_sql_query(query, conn)

    def get_run(self, run_id: str) -> dict[str, Any]:
        """A run by id or unique id prefix, with its JSON columns decoded."""
        with closing(self.connect()) as conn:
            conn.row_factory = sqlite3.Row
            rows = conn.execute(
                "SELECT * FROM runs WHERE substr(id, 1, ?) = ? LIMIT 2", (len(run_id), run_id)
            ).fetchall()
        if not rows:
            raise ConfigError(f"no run '{run_id}' in {self.path}")
        if len(rows) > 1:
            raise ConfigError(f"run id prefix '{run_id}' is ambiguous in {self.path}")
        run = dict(rows[0])
        for key in ("config", "summary", "plugins", "environment"):
            run[key] = json.loads(run[key])
        return run

    def curves(self, run_id: str) -> pd.DataFrame:
        """Curves of a run, one row per evaluation step, one column per curve."""
        import pandas as pd

        with closing(self.connect()) as conn:
            long = pd.read_sql_query("SELECT step, name, value FROM curves WHERE run_id = ?", conn, params=(run_id,))
        if long.empty:
            return pd.DataFrame({"step": []})
        wide = long.pivot(index="step", columns="name", values="value").reset_index()
        wide.columns.name = None
        return wide


def _known(names: Iterable[str]) -> str:
    names = list(names)
    return f" (suites: {', '.join(names)})" if names else " (it has no suites)"


def _real(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None

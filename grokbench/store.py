"""The results store: one SQLite file (WAL), a versioned schema with migrations, transactional writes.

A run is written once, when it ends, in one transaction: its row in ``runs``
and its curves in ``curves`` (long format: run, step, name, value). An
interrupted run leaves nothing behind. ``PRAGMA application_id`` marks the file
as a grokbench store; ``PRAGMA user_version`` is its schema version.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from .errors import ConfigError

APPLICATION_ID = 0x47524F4B  # "GROK"
DEFAULT_PATH = "grokbench.db"
STORE_ENV = "GROKBENCH_STORE"

#: MIGRATIONS[i] upgrades a store from schema version i to i + 1.
MIGRATIONS: list[str] = [
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
        self.path = Path(path) if path is not None else default_path()
        if not self.path.exists():
            if not create:
                raise ConfigError(f"no results store at {self.path} (run 'grokbench run' first, or pass --store)")
            if not self.path.parent.is_dir():
                raise ConfigError(f"cannot create the store {self.path}: directory {self.path.parent} does not exist")
        elif self.path.is_dir():
            raise ConfigError(f"{self.path} is a directory, not a grokbench store")
        else:
            self._check_or_migrate()

    def _ensure(self) -> None:
        """Create the file (with the current schema) on the first write."""
        if not self.path.exists():
            self._check_or_migrate()

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30)
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def _check_or_migrate(self) -> None:
        try:
            with closing(self.connect()) as conn:
                app_id = conn.execute("PRAGMA application_id").fetchone()[0]
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                has_tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] > 0
                if app_id != APPLICATION_ID and (has_tables or version):
                    raise ConfigError(f"{self.path} is not a grokbench store")
                if version > SCHEMA_VERSION:
                    raise ConfigError(
                        f"{self.path} has schema version {version}, newer than this grokbench supports "
                        f"({SCHEMA_VERSION}); upgrade grokbench"
                    )
                if version < SCHEMA_VERSION:
                    self._migrate(conn, version)
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"{self.path} is not a grokbench store ({exc})") from None

    @staticmethod
    def _migrate(conn: sqlite3.Connection, version: int) -> None:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.isolation_level = None  # explicit BEGIN/COMMIT: DDL inside one transaction
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = conn.execute("PRAGMA user_version").fetchone()[0]  # another process may have migrated
            for target in range(current, SCHEMA_VERSION):
                for statement in MIGRATIONS[target].split(";"):
                    if statement.strip():
                        conn.execute(statement)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # ------------------------------------------------------------------ writing

    def save_run(self, run: dict[str, Any], curves: Iterable[dict[str, float]]) -> None:
        """Insert a run and its curves atomically."""
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
        with closing(self.connect()) as conn, conn:
            conn.execute(f"INSERT INTO runs ({columns}) VALUES ({marks})", row)
            conn.executemany("INSERT INTO curves (run_id, step, name, value) VALUES (?, ?, ?, ?)", points)

    # ------------------------------------------------------------------ reading

    def runs(self, limit: int | None = None) -> pd.DataFrame:
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
            rows = conn.execute("SELECT * FROM runs WHERE id LIKE ? || '%' LIMIT 2", (run_id,)).fetchall()
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
        with closing(self.connect()) as conn:
            long = pd.read_sql_query("SELECT step, name, value FROM curves WHERE run_id = ?", conn, params=(run_id,))
        if long.empty:
            return pd.DataFrame({"step": []})
        wide = long.pivot(index="step", columns="name", values="value").reset_index()
        wide.columns.name = None
        return wide


def _real(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None

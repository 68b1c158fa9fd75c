import json
import sqlite3

import pytest

from grokbench.errors import ConfigError
from grokbench.storage.store import APPLICATION_ID, SCHEMA_VERSION, Store


def row(run_id="r1", **kw):
    base = {
        "id": run_id,
        "created_at": "2026-01-01T00:00:00.000+00:00",
        "config_hash": "abc",
        "config": {"task": {"name": "t"}},
        "task": "t",
        "model": "m",
        "regularizer": "none",
        "optimizer": "gd",
        "preset": None,
        "seed": 0,
        "status": "completed",
        "message": None,
        "steps": 10,
        "t_memorize": 5,
        "t_generalize": None,
        "final_train_acc": 1.0,
        "final_test_acc": 0.2,
        "wall_seconds": 0.5,
        "summary": {"t_memorize": 5},
        "plugins": {},
        "environment": {},
    }
    base.update(kw)
    return base


CURVES = [{"step": 0, "train_acc": 0.1, "test_acc": 0.0}, {"step": 5, "train_acc": 1.0, "test_acc": float("nan")}]


def test_round_trip_in_a_real_sqlite_file(store_path):
    store = Store(store_path)
    assert not store_path.exists()  # created on first write only
    store.save_run(row(), CURVES)
    run = store.get_run("r")
    assert run["config"] == {"task": {"name": "t"}} and run["t_memorize"] == 5 and run["t_generalize"] is None
    curves = store.curves("r1")
    assert list(curves["step"]) == [0, 5] and list(curves["train_acc"]) == [0.1, 1.0]
    assert curves["test_acc"].isna().iloc[1]  # NaN stored as NULL
    assert list(store.runs()["id"]) == ["r1"]
    with sqlite3.connect(store_path) as conn:
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_failed_write_leaves_nothing(store_path):
    store = Store(store_path)
    store.save_run(row("r1"), CURVES)
    with pytest.raises(sqlite3.IntegrityError):
        store.save_run(row("r2"), CURVES + [{"step": 0, "train_acc": 0.5}])  # duplicate curve point
    with sqlite3.connect(store_path) as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM curves WHERE run_id = 'r2'").fetchone()[0] == 0


def test_not_a_store_and_newer_schema_are_refused_untouched(tmp_path):
    text = tmp_path / "notes.db"
    text.write_text("hello")
    with pytest.raises(ConfigError, match="is not a grokbench store"):
        Store(text)
    assert text.read_text() == "hello"
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE things (x)")
    with pytest.raises(ConfigError, match="is not a grokbench store"):
        Store(other)
    newer = tmp_path / "newer.db"
    with sqlite3.connect(newer) as conn:
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(ConfigError, match="newer than this grokbench"):
        Store(newer)


def test_missing_store_for_reading_and_ambiguous_prefix(store_path):
    with pytest.raises(ConfigError, match="no results store"):
        Store(store_path, create=False)
    store = Store(store_path)
    store.save_run(row("abc1"), CURVES)
    store.save_run(row("abc2"), CURVES)
    with pytest.raises(ConfigError, match="ambiguous"):
        store.get_run("abc")
    with pytest.raises(ConfigError, match="no run 'zzz'"):
        store.get_run("zzz")
    assert json.loads(json.dumps(store.get_run("abc2")["summary"])) == {"t_memorize": 5}

"""Runs whose process died without a word (SIGKILL, power loss): found when a store is opened, marked
``interrupted`` with the curves they kept."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import sys

from grokbench.storage.store import Store

#: a run on another host whose heartbeat is older than this (seconds) is taken for dead
STALE_AFTER = 3600.0


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie (a worker killed with its driver may wait a while to be reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return sys.platform != "linux"  # on Linux: it just went; elsewhere there is no /proc to read
    except (OSError, IndexError):
        return True


def recognize_dead_runs(store: Store) -> list[str]:
    """Mark ``interrupted`` the ``running`` runs whose process is gone (same host: its pid is not alive;
    another host: no heartbeat for :data:`STALE_AFTER` seconds), with the summary of the curves they kept."""
    host, dead = socket.gethostname(), []
    now = dt.datetime.now(dt.timezone.utc)
    for run in store.running():
        if run["host"] == host:
            gone = run["pid"] is None or not _alive(int(run["pid"]))
        else:
            beat = dt.datetime.fromisoformat(run["heartbeat"]) if run["heartbeat"] else None
            gone = beat is None or (now - beat).total_seconds() > STALE_AFTER
        if gone:
            dead.append(run)
    for run in dead:
        from grokbench.config.run import TrainConfig
        from grokbench.training.summaries import summarize

        curves = store.curves(run["id"])
        records = curves.to_dict("records")
        train = TrainConfig.model_validate(json.loads(run["config"])["train"])
        summary = summarize(records, train) if records else summarize([], train)
        store.update_run(
            run["id"],
            {
                "status": "interrupted",
                "message": f"process {run['pid']} on {run['host']} stopped without a word (last heartbeat {run['heartbeat']})",
                "summary": summary,
                "t_memorize": summary.get("t_memorize"),
                "t_generalize": summary.get("t_generalize"),
                "final_train_acc": summary.get("final_train_acc"),
                "final_test_acc": summary.get("final_test_acc"),
            },
        )
    return [r["id"] for r in dead]


def open_store(path: str | os.PathLike[str] | None = None, *, create: bool = True) -> Store:
    """Open a store (see :class:`Store`) and mark ``interrupted`` the runs whose process died without a word."""
    store = Store(path, create=create)
    if store.path.exists() and not store.readonly and store.running():
        recognize_dead_runs(store)
    return store

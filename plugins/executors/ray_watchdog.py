"""A watchdog that ends a local Ray instance's processes when the driver that started it dies (Linux).

Ray ties the processes ``ray.init()`` starts (GCS, raylet, monitors) to the driver with PR_SET_PDEATHSIG, but
the raylet's own children, its agents and workers, outlive a driver killed with SIGKILL by a minute or more
(an agent that sees its raylet gone first reports to the dead GCS, with a 60 s timeout). The ``ray`` executor
starts this script (stdlib only, run by path) in a session of its own, so that a terminal's Ctrl-C does not
reach it, with a pipe on its stdin and the pids of the processes ``ray.init()`` started as arguments. Until
the pipe closes, which happens when the driver exits however it exits, it notes those processes and their
descendants (pid and start time, from /proc) once a second; then it SIGKILLs every one of them still alive.

    python ray_watchdog.py PID [PID ...]
"""

from __future__ import annotations

import os
import select
import signal
import sys

#: seconds between two looks at the Ray processes' descendants while the driver lives
SCAN_EVERY = 1.0


def _stat(pid: int) -> tuple[int, int] | None:
    """``(parent pid, start time)`` of a live process, or None for one gone (or a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in "ZX" else (int(fields[1]), int(fields[19]))


def descendants(roots: dict[int, int]) -> dict[int, int]:
    """``roots`` (pid: start time) still alive, and every live descendant of them, as pid: start time."""
    parents: dict[int, list[tuple[int, int]]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            parents.setdefault(stat[0], []).append((int(entry), stat[1]))
    found = {pid: start for pid, start in roots.items() if (s := _stat(pid)) is not None and s[1] == start}
    todo = list(found)
    while todo:
        for child, start in parents.get(todo.pop(), []):
            if child not in found:
                found[child] = start
                todo.append(child)
    return found


def children(pid: int) -> set[int]:
    """The live children of ``pid``."""
    return {int(e) for e in os.listdir("/proc") if e.isdigit() and (s := _stat(int(e))) is not None and s[0] == pid}


def kill(known: dict[int, int]) -> None:
    """SIGKILL every process of ``known`` that is still the same process (same start time), and its descendants."""
    for pid in descendants(known):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def watch(roots: list[int]) -> None:
    known = {pid: stat[1] for pid in roots if (stat := _stat(pid)) is not None}
    while True:
        known.update(descendants(known))
        ready, _, _ = select.select([sys.stdin], [], [], SCAN_EVERY)
        if ready and not os.read(sys.stdin.fileno(), 4096):  # end of file: the driver is gone
            break
    kill(known)


if __name__ == "__main__":
    watch([int(pid) for pid in sys.argv[1:]])

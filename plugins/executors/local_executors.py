"""Executors on one machine: ``inline`` (the driver's own process) and ``process`` (a local process pool)."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from pydantic import Field, PositiveInt

from grokbench import hookimpl
from grokbench.contracts import Executor, GroupInterrupted
from grokbench.plugin import contracts


class InlineExecutor(Executor):
    """Train the runs one group after another in this process (the reference; no parallelism)."""

    name = "inline"
    capabilities = frozenset({"in-process"})

    class Params(contracts.Params):
        threads: PositiveInt = Field(
            1, description="torch threads while the suite runs (small runs gain nothing from more)"
        )

    def start(self) -> None:
        import torch

        self.saved_threads = torch.get_num_threads()
        torch.set_num_threads(self.params.threads)

    def close(self) -> None:
        import torch

        torch.set_num_threads(self.saved_threads)

    def map(self, work: Callable[[list[Any]], list[Any]], groups: Sequence[list[Any]]) -> Iterator[tuple[int, Any]]:
        for index, group in enumerate(groups):
            try:
                yield index, work(group)
            except Exception as exc:
                yield index, exc


#: in a worker: the shared array where it marks the groups it starts (by its pid)
_STARTED: Any = None
#: in a worker: the shared flag the driver sets when it stops (a group not yet started is then not started)
_STOPPING: Any = None
#: in a worker: True while it trains a group (a signal then interrupts it; an idle worker ignores signals)
_BUSY = False
#: seconds the driver waits, once it has told its workers to stop, for them to hand back what they kept
STOP_GRACE = 60.0
#: seconds between two reminders to workers that have not yet heard the stop (one may have just started a group)
STOP_REMIND = 1.0


def _init_worker(threads: int, started: Any, stopping: Any, driver: int) -> None:
    global _STARTED, _STOPPING
    die_with_parent(driver)
    _STARTED, _STOPPING = started, stopping
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is not signal.SIG_IGN:  # a driver that ignores SIGINT (nohup, &): so do its workers
            signal.signal(sig, _interrupt)
    import torch

    torch.set_num_threads(threads)


def die_with_parent(driver: int) -> None:
    """Linux: ask the kernel to SIGKILL this process when its parent dies (prctl PR_SET_PDEATHSIG), so that
    killing a driver never leaves its workers training; exit at once if the driver is already gone."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != driver:
        os._exit(1)


def _interrupt(signum: int, frame: Any) -> None:
    """In a worker, SIGINT or SIGTERM (a terminal's Ctrl-C reaches every worker; the stopping driver sends
    SIGTERM) interrupts the group being trained, once; an idle worker ignores it and the pool lives on."""
    global _BUSY
    if _BUSY:
        _BUSY = False
        raise KeyboardInterrupt(f"signal {signum}")


def _tracked(work: Callable[[list[Any]], list[Any]], index: int, group: list[Any]) -> Any:
    """Run ``work`` on a group in a worker; when interrupted, return the :class:`GroupInterrupted` that says what
    it kept (an empty one for a group that never started because the driver was stopping)."""
    global _BUSY
    _STARTED[index] = os.getpid()  # before reading the flag: a driver that sets it then reads this sees the pid
    if _STOPPING.value:
        return GroupInterrupted()
    try:
        _BUSY = True
        return work(group)
    except GroupInterrupted as stop:
        return stop
    except KeyboardInterrupt:
        return GroupInterrupted()
    finally:
        _BUSY = False


class WorkerDied(RuntimeError):
    """A worker process died (killed, out of memory) while training a group, on every attempt."""


class ProcessExecutor(Executor):
    """Train groups in a local pool of worker processes (forked on Linux, so workers start at once).

    Workers die with the driver. When a worker dies, the pool breaks: the groups that had not started,
    and those that were running on the workers the pool then stopped, are trained again in a new pool;
    a group whose own worker died is retried once and recorded as failed if its worker dies again.
    Interrupted (Ctrl-C, SIGTERM), the driver starts no new group, sends SIGTERM to the busy workers, and
    yields what each kept (``GroupInterrupted``) before it raises KeyboardInterrupt again.
    """

    name = "process"
    #: times a group may be running on a worker that dies before it is recorded as failed
    attempts = 2

    class Params(contracts.Params):
        jobs: PositiveInt | None = Field(None, description="worker processes (default: the number of CPUs)")
        threads: PositiveInt | None = Field(None, description="torch threads per worker (default: CPUs / jobs)")

    def start(self) -> None:
        cpus = os.cpu_count() or 1
        self.jobs = self.params.jobs or cpus
        self.threads = self.params.threads or max(1, cpus // self.jobs)
        # fork shares the driver's imports (torch, plugins): a worker is ready in milliseconds. The driver
        # trains nothing itself, so no torch thread pool is forked mid-use. Elsewhere, spawn.
        self.context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        self.pool: ProcessPoolExecutor | None = None
        self.futures: dict[Future[Any], int] = {}

    def _new_pool(self, started: Any, stopping: Any) -> ProcessPoolExecutor:
        self.pool = ProcessPoolExecutor(
            self.jobs,
            mp_context=self.context,
            initializer=_init_worker,
            initargs=(self.threads, started, stopping, os.getpid()),
        )
        return self.pool

    def map(self, work: Callable[[list[Any]], list[Any]], groups: Sequence[list[Any]]) -> Iterator[tuple[int, Any]]:
        started = self.context.Array("l", len(groups), lock=False)  # pid of the worker that started each group
        stopping = self.context.Value("b", 0, lock=False)
        deaths = [0] * len(groups)
        todo = list(range(len(groups)))
        for _ in range(len(groups) + self.attempts + 1):  # every broken pool charges a group, so this ends
            if not todo:
                return
            pool = self._new_pool(started, stopping)
            self.futures = futures = {pool.submit(_tracked, work, index, groups[index]): index for index in todo}
            todo, broken = [], []
            try:
                while futures:
                    done, _ = wait(futures, return_when=FIRST_COMPLETED)
                    for future in done:
                        index = futures.pop(future)
                        try:
                            answer = future.result()
                        except BrokenProcessPool:
                            broken.append(index)
                            continue
                        except Exception as exc:  # the work function itself raised: its runs are recorded as failed
                            answer = exc
                        yield index, answer
            except KeyboardInterrupt:
                yield from _stop(futures, started, stopping)
                raise
            if broken:
                dead = _dead_workers(pool)
                pool.shutdown(wait=True)
                for index in broken:
                    pid, started[index] = started[index], 0
                    if pid and (pid in dead or not dead):
                        deaths[index] += 1
                    if deaths[index] >= self.attempts:
                        yield (
                            index,
                            WorkerDied(
                                f"its worker process died {deaths[index]} times while training it (killed, or out of memory)"
                            ),
                        )
                    else:
                        todo.append(index)
        for index in todo:
            yield index, WorkerDied("worker processes kept dying before this group could run")

    def close(self) -> None:
        if self.pool is None:
            return
        if any(not f.done() for f in self.futures):  # a group still training (a stop not heeded in time): kill
            for process in list((getattr(self.pool, "_processes", None) or {}).values()):
                process.kill()
        self.pool.shutdown(wait=True, cancel_futures=True)


def _stop(futures: dict[Future[Any], int], started: Any, stopping: Any) -> Iterator[tuple[int, Any]]:
    """Stop the pool's work: no group starts any more, busy workers get SIGTERM (and a reminder every
    :data:`STOP_REMIND` seconds, for one that started a group as the flag was set); yield what each kept."""
    stopping.value = 1
    for future in futures:
        future.cancel()  # not yet handed to a worker
    deadline = time.monotonic() + STOP_GRACE
    while futures and time.monotonic() < deadline:
        for future, index in futures.items():
            if not future.done() and started[index]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(started[index], signal.SIGTERM)
        done, _ = wait(futures, timeout=STOP_REMIND, return_when=FIRST_COMPLETED)
        for future in done:
            index = futures.pop(future)
            if future.cancelled() or future.exception() is not None:  # never started, or its worker died
                continue
            yield index, future.result()


def _dead_workers(pool: ProcessPoolExecutor) -> set[int]:
    """Pids of the workers that died on their own (not stopped by the broken pool with SIGTERM)."""
    processes = getattr(pool, "_processes", None) or {}
    return {pid for pid, p in processes.items() if p.exitcode is not None and p.exitcode != -signal.SIGTERM}


@hookimpl
def register_executors(register):
    register(InlineExecutor)
    register(ProcessExecutor)

"""Executors on one machine: ``inline`` (the driver's own process) and ``process`` (a local process pool)."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from pydantic import Field, PositiveInt

from grokbench import contracts, hookimpl
from grokbench.contracts import Executor


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


def _init_worker(threads: int, started: Any, driver: int) -> None:
    global _STARTED
    die_with_parent(driver)
    _STARTED = started
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


def _tracked(work: Callable[[list[Any]], list[Any]], index: int, group: list[Any]) -> list[Any]:
    _STARTED[index] = os.getpid()
    return work(group)


class WorkerDied(RuntimeError):
    """A worker process died (killed, out of memory) while training a group, on every attempt."""


class ProcessExecutor(Executor):
    """Train groups in a local pool of worker processes (forked on Linux, so workers start at once).

    Workers die with the driver. When a worker dies, the pool breaks: the groups that had not started,
    and those that were running on the workers the pool then stopped, are trained again in a new pool;
    a group whose own worker died is retried once and recorded as failed if its worker dies again.
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

    def _new_pool(self, started: Any) -> ProcessPoolExecutor:
        self.pool = ProcessPoolExecutor(
            self.jobs, mp_context=self.context, initializer=_init_worker, initargs=(self.threads, started, os.getpid())
        )
        return self.pool

    def map(self, work: Callable[[list[Any]], list[Any]], groups: Sequence[list[Any]]) -> Iterator[tuple[int, Any]]:
        started = self.context.Array("l", len(groups), lock=False)  # pid of the worker that started each group
        self.started, self.running = started, set()  # the groups in flight, for interrupt()
        deaths = [0] * len(groups)
        todo = list(range(len(groups)))
        for _ in range(len(groups) + self.attempts + 1):  # every broken pool charges a group, so this ends
            if not todo:
                return
            pool = self._new_pool(started)
            futures = {pool.submit(_tracked, work, index, groups[index]): index for index in todo}
            self.running = set(futures.values())
            todo, broken = [], []
            while futures:
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                for future in done:
                    index = futures.pop(future)
                    self.running.discard(index)
                    try:
                        yield index, future.result()
                    except BrokenProcessPool:
                        broken.append(index)
                    except Exception as exc:  # the work function itself raised: its runs are recorded as failed
                        yield index, exc
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

    def interrupt(self) -> None:
        """SIGTERM to the workers training a group: each ends its runs ``interrupted``, with their curves (idle
        workers are left alone: one that died would break the pool, which then kills the others mid-write)."""
        busy = {self.started[i] for i in getattr(self, "running", ())} - {0}
        for pid in busy:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def _dead_workers(pool: ProcessPoolExecutor) -> set[int]:
    """Pids of the workers that died on their own (not stopped by the broken pool with SIGTERM)."""
    processes = getattr(pool, "_processes", None) or {}
    return {pid for pid, p in processes.items() if p.exitcode is not None and p.exitcode != -signal.SIGTERM}


@hookimpl
def register_executors(register):
    register(InlineExecutor)
    register(ProcessExecutor)

"""Executors on one machine: ``inline`` (the driver's own process) and ``process`` (a local process pool)."""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

from pydantic import Field, PositiveInt

from grokbench import contracts, hookimpl
from grokbench.contracts import Executor


class InlineExecutor(Executor):
    """Train the runs one group after another in this process (the reference; no parallelism)."""

    name = "inline"
    capabilities = frozenset({"in-process"})

    class Params(contracts.Params):
        threads: PositiveInt = Field(1, description="torch threads while the suite runs (small runs gain nothing from more)")

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


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


class ProcessExecutor(Executor):
    """Train groups in a local pool of worker processes (forked on Linux, so workers start at once)."""

    name = "process"

    class Params(contracts.Params):
        jobs: PositiveInt | None = Field(None, description="worker processes (default: the number of CPUs)")
        threads: PositiveInt | None = Field(None, description="torch threads per worker (default: CPUs / jobs)")

    def start(self) -> None:
        cpus = os.cpu_count() or 1
        jobs = self.params.jobs or cpus
        threads = self.params.threads or max(1, cpus // jobs)
        # fork shares the driver's imports (torch, plugins): a worker is ready in milliseconds. The driver
        # trains nothing itself, so no torch thread pool is forked mid-use. Elsewhere, spawn.
        method = "fork" if sys.platform.startswith("linux") else "spawn"
        self.pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context(method), initializer=_init_worker, initargs=(threads,))

    def map(self, work: Callable[[list[Any]], list[Any]], groups: Sequence[list[Any]]) -> Iterator[tuple[int, Any]]:
        futures = {self.pool.submit(work, group): index for index, group in enumerate(groups)}
        while futures:
            done, _ = wait(futures, return_when=FIRST_COMPLETED)
            for future in done:
                index = futures.pop(future)
                try:
                    yield index, future.result()
                except Exception as exc:  # a crashed worker: its runs are recorded as failed
                    yield index, exc

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


@hookimpl
def register_executors(register):
    register(InlineExecutor)
    register(ProcessExecutor)

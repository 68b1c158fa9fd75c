"""Executors: where the runs of a suite train."""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

from grokbench.plugin.contracts.base import Capability, Component


class Executor(Component):
    """Trains groups of runs somewhere and hands the results back to the driver.

    :func:`grokbench.driving.suites.run_suite` calls ``start()``, then ``map(work, groups)``, then ``close()``
    (always, after a successful ``start``). ``work`` is a picklable callable that takes a group (a list of
    :class:`grokbench.config.run.RunConfig`) and returns its :class:`grokbench.training.programs.RunResult`
    list; call it exactly as given, one group per call, so that a model can batch the group's runs. An
    executor never writes to the results store itself.
    """

    CAPABILITIES: ClassVar[Mapping[str, Capability]] = {
        "in-process": Capability(
            "`work` runs in the driver's own process (it may then use the driver's plugins directly)"
        ),
        "remote": Capability(
            "`work` runs on other machines: it returns its runs and the driver stores them (otherwise each run "
            "records itself in the store as it trains); the driver neither checks its own devices nor resumes "
            "runs from their checkpoints. An instance that trains on this machine drops it (`ray` without a cluster)"
        ),
    }

    def start(self) -> None:
        """Acquire resources (start a pool, connect to a cluster); raise :class:`grokbench.errors.ConfigError`
        for bad input, such as an unreachable cluster, before anything is written."""

    @abc.abstractmethod
    def map(self, work: Callable[[list[Any]], list[Any]], groups: Sequence[list[Any]]) -> Iterator[tuple[int, Any]]:
        """Call ``work(groups[i])`` for every ``i`` and yield ``(i, results)`` as each finishes, in any order;
        yield ``(i, exception)`` for a group that could not run (a crashed worker, a lost task).

        Ctrl-C or SIGTERM raises KeyboardInterrupt inside ``map``: start no more groups, make the busy workers
        stop (``work`` then raises :class:`GroupInterrupted` with the runs it kept), yield
        ``(i, GroupInterrupted)`` for each group that handed something back, then raise KeyboardInterrupt again.
        Workers that cannot hand anything back (Ray's cancelled tasks) are stopped and it raises at once.
        """

    def close(self) -> None:
        """Release what :meth:`start` acquired."""


class GroupInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a group in a worker: ``results`` are the runs it kept (finished, or ``interrupted``
    with their curves). Picklable: it travels back to the driver, which stores them."""

    def __init__(self, results: Sequence[Any] = ()):
        super().__init__(f"{len(results)} runs kept")
        self.results = list(results)

    def __reduce__(self) -> Any:
        return (type(self), (self.results,))

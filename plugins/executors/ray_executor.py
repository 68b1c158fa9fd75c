"""The ``ray`` executor: runs a suite on a Ray cluster, or on a local Ray instance when none is given.

Needs the ``ray`` extra (``pip install "grokbench[ray]"``); Ray is imported only
when a suite runs with this executor. On a local Ray instance the workers record their runs in the store as
they train; on a cluster (``remote``) they train and return results, and the driver writes them. A local Ray
instance started here dies with the driver: on Linux a watchdog (:mod:`grokbench_plugins.executors.ray_watchdog`) ends its
agents and workers as soon as the driver exits, even by SIGKILL. Interrupted (Ctrl-C, SIGTERM), the driver
cancels its tasks (Ray raises KeyboardInterrupt in each); Ray hands nothing back from a cancelled task, so on a
local instance the driver waits briefly for the workers to end their runs ``interrupted`` (with their curves) in
the store, and on a cluster the runs in flight are not kept (the next invocation trains them).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, PositiveFloat, PositiveInt

from grokbench import hookimpl
from grokbench.contracts import Executor, Params
from grokbench.errors import ConfigError


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast (ConfigError) when ``host:port`` (or ``ray://host:port``) accepts no TCP connection."""
    if address in ("auto", "local"):
        return
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        raise ConfigError(f"invalid Ray address '{address}' (expected HOST:PORT, ray://HOST:PORT or auto)")
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        raise ConfigError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}") from None


#: seconds an interrupted driver waits for local Ray workers to end their runs ``interrupted`` in the store
STOP_GRACE = 10.0


class RayExecutor(Executor):
    """Train groups as Ray tasks: on the cluster at --address (or $RAY_ADDRESS), else on a local Ray instance."""

    name = "ray"
    capabilities = frozenset({"remote"})

    class Params(Params):
        address: str | None = Field(
            None, description="Ray cluster (HOST:PORT, ray://HOST:PORT, auto); default $RAY_ADDRESS"
        )
        jobs: PositiveInt | None = Field(None, description="CPUs of a local Ray instance (default: all)")
        cpus_per_run: PositiveFloat = Field(1.0, description="CPUs each task (one group of seeds) reserves")
        gpus_per_run: float = Field(0.0, ge=0, description="GPUs each task reserves (fractions share a GPU)")

    @classmethod
    def capabilities_for(cls, params: Params) -> frozenset[str]:
        """Not ``remote`` on a local Ray instance: its workers share this machine."""
        address = params.address or os.environ.get("RAY_ADDRESS")
        return cls.capabilities - {"remote"} if not address or address == "local" else cls.capabilities

    def __init__(self, params: Params):
        super().__init__(params)
        self.address = params.address or os.environ.get("RAY_ADDRESS")

    def start(self) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("the 'ray' executor needs Ray: pip install \"grokbench[ray]\"") from None
        self.ray = ray
        self.owned = False
        self.watchdog: subprocess.Popen[bytes] | None = None
        address = self.address
        if address:
            check_reachable(address)
        if ray.is_initialized():  # the caller already connected (a notebook, a test session): use that
            return
        quiet: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
        if address:
            try:
                ray.init(address=address, **({} if address.startswith("ray://") else quiet))
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ConfigError(
                    f"cannot connect to the Ray cluster at {address}: {str(exc).splitlines()[0]}"
                ) from None
        else:
            before = _children()
            ray.init(num_cpus=self.params.jobs, **quiet)
            self.watchdog = _watch(_children() - before)
        self.owned = True

    def map(self, work: Callable[[list[Any]], list[Any]], groups: Sequence[list[Any]]) -> Iterator[tuple[int, Any]]:
        ray = self.ray
        remote = ray.remote(num_cpus=self.params.cpus_per_run, num_gpus=self.params.gpus_per_run, max_retries=1)(_call)
        pending = {remote.remote(work, group): index for index, group in enumerate(groups)}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    index = pending.pop(ref)
                    try:
                        answer = ray.get(ref)
                    except Exception as exc:  # a lost worker or task: its runs are recorded as failed
                        answer = exc
                    yield index, answer
        except KeyboardInterrupt:  # Ctrl-C, SIGTERM: no task starts, the running ones get KeyboardInterrupt
            for ref in pending:
                with contextlib.suppress(Exception):
                    ray.cancel(ref)
            # its workers record their runs: let them end them `interrupted` before close()
            if not self.supports("remote"):
                with contextlib.suppress(Exception):
                    ray.wait(list(pending), num_returns=len(pending), timeout=STOP_GRACE)
            raise

    def close(self) -> None:
        if self.owned:
            self.ray.shutdown()
        if self.watchdog is not None:
            self.watchdog.stdin.close()  # type: ignore[union-attr]  # the watchdog ends what is left, and exits
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.watchdog.wait(timeout=60)


def _children() -> set[int]:
    if not sys.platform.startswith("linux"):
        return set()
    from .ray_watchdog import children

    return children(os.getpid())


def _watch(started: set[int]) -> subprocess.Popen[bytes] | None:
    """Start the watchdog over the processes ``ray.init()`` started (Linux: it reads /proc)."""
    if not started:
        return None
    from . import ray_watchdog

    return subprocess.Popen(
        [sys.executable, "-I", ray_watchdog.__file__, *map(str, sorted(started))],
        stdin=subprocess.PIPE,
        start_new_session=True,  # a terminal's Ctrl-C must not end it before the driver is gone
        close_fds=True,
    )


def _call(work: Callable[[list[Any]], list[Any]], group: list[Any]) -> list[Any]:
    """A Ray task: ``work`` (any picklable callable, a partial included) on one group."""
    return work(group)


@hookimpl
def register_executors(register):
    register(RayExecutor)

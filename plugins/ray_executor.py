"""The ``ray`` executor: runs a suite on a Ray cluster, or on a local Ray instance when none is given.

Needs the ``ray`` extra (``pip install "grokbench[ray]"``); Ray is imported only
when a suite runs with this executor. On a local Ray instance the workers record their runs in the store as
they train; on a cluster (``remote``) they train and return results, and the driver writes them.
"""

from __future__ import annotations

import logging
import os
import socket
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


class RayExecutor(Executor):
    """Train groups as Ray tasks: on the cluster at --address (or $RAY_ADDRESS), else on a local Ray instance."""

    name = "ray"

    class Params(Params):
        address: str | None = Field(
            None, description="Ray cluster (HOST:PORT, ray://HOST:PORT, auto); default $RAY_ADDRESS"
        )
        jobs: PositiveInt | None = Field(None, description="CPUs of a local Ray instance (default: all)")
        cpus_per_run: PositiveFloat = Field(1.0, description="CPUs each task (one group of seeds) reserves")
        gpus_per_run: float = Field(0.0, ge=0, description="GPUs each task reserves (fractions share a GPU)")

    def start(self) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("the 'ray' executor needs Ray: pip install \"grokbench[ray]\"") from None
        self.ray = ray
        self.owned = False
        address = self.params.address or os.environ.get("RAY_ADDRESS")
        self.remote = (
            bool(address) and address != "local"
        )  # runs train elsewhere: the driver does not check its own devices
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
            ray.init(num_cpus=self.params.jobs, **quiet)
        self.owned = True

    def map(self, work: Callable[[list[Any]], list[Any]], groups: Sequence[list[Any]]) -> Iterator[tuple[int, Any]]:
        ray = self.ray
        remote = ray.remote(num_cpus=self.params.cpus_per_run, num_gpus=self.params.gpus_per_run, max_retries=1)(_call)
        pending = {remote.remote(work, group): index for index, group in enumerate(groups)}
        self.pending = pending
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                index = pending.pop(ref)
                try:
                    yield index, ray.get(ref)
                except Exception as exc:  # a lost worker or task: its runs are recorded as failed
                    yield index, exc

    def interrupt(self) -> None:
        """Cancel the tasks in flight: Ray raises KeyboardInterrupt in each, which ends its runs ``interrupted``."""
        for ref in list(getattr(self, "pending", {})):
            try:
                self.ray.cancel(ref)
            except Exception:  # a task that already finished
                pass

    def close(self) -> None:
        if self.owned:
            self.ray.shutdown()


def _call(work: Callable[[list[Any]], list[Any]], group: list[Any]) -> list[Any]:
    """A Ray task: ``work`` (any picklable callable, a partial included) on one group."""
    return work(group)


@hookimpl
def register_executors(register):
    register(RayExecutor)

"""Signals while runs train: SIGTERM raised as Ctrl-C is, a signal remembered even where a library swallowed its
KeyboardInterrupt, and a suite driver's interrupts delivered only where the executor can hear them (never while a
result is half-stored). Imports only the standard library's ``contextlib``, ``signal`` and ``threading``: the
command line installs :func:`install` before anything heavy is imported."""

from __future__ import annotations

import contextlib
import signal
import threading

TYPE_CHECKING = False  # not typing's: this module is imported first thing at start, and typing is slow to import
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

#: the first SIGINT or SIGTERM the command line heard, or None (never set where :func:`install` was not called: a
#: program using grokbench as a library may go on after an interrupt)
heard: int | None = None
_installed = False


def _hear(signum: int, frame: object) -> None:
    """SIGINT and SIGTERM: remembered (under the command line), then raised as KeyboardInterrupt."""
    global heard
    if _installed and heard is None:
        heard = signum
    raise KeyboardInterrupt(f"signal {signum}")


def install() -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt and are remembered (main thread only; a signal ignored at start,
    as under ``nohup``, stays ignored)."""
    global _installed
    if threading.current_thread() is not threading.main_thread():
        return
    _installed = True
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, _hear)


def raise_if_heard() -> None:
    """Raise KeyboardInterrupt if a signal was heard although the process goes on: a library swallowed it (torch's
    extension catches every error while it imports numpy, KeyboardInterrupt included, and goes on without numpy).
    Called before anything is trained."""
    if heard is not None:
        raise KeyboardInterrupt(f"signal {heard}")


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt (as Ctrl-C does) while runs train, in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raise_if_heard()
    previous = signal.signal(signal.SIGTERM, _hear)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Interrupts:
    """While a suite runs in the main thread, SIGINT and SIGTERM raise KeyboardInterrupt only inside the
    executor's ``map`` (while it waits for its workers, or trains in this process). One that strikes while the
    driver stores a result waits, and is thrown into ``map`` when the driver asks it for its next answer: no
    result is half-stored, and the executor always hears of it (it stops its workers and hands back what they
    kept)."""

    def __init__(self) -> None:
        self.listening = False
        self.pending: KeyboardInterrupt | None = None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> _Interrupts:
        if threading.current_thread() is threading.main_thread():
            raise_if_heard()
            for sig in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(sig) is not signal.SIG_IGN:  # a driver started with the signal ignored keeps it so
                    self.previous[sig] = signal.signal(sig, self._interrupt)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _interrupt(self, signum: int, frame: object) -> None:
        global heard
        if _installed and heard is None:
            heard = signum
        stop = KeyboardInterrupt(f"signal {signum}")
        if self.listening:
            raise stop
        self.pending = stop

    def answers(self, answers: Iterator[tuple[int, Any]]) -> Iterator[tuple[int, Any]]:
        """The executor's answers, with the interrupts that struck between two of them thrown in."""
        while True:
            self.listening = True
            try:
                stop, self.pending = self.pending, None
                item = next(answers) if stop is None else _throw(answers, stop)
            except StopIteration:
                if self.pending is not None:  # struck while the last result was stored: the suite still stops
                    raise self.pending from None
                return
            finally:
                self.listening = False
            yield item


def _throw(answers: Iterator[tuple[int, Any]], stop: KeyboardInterrupt) -> tuple[int, Any]:
    """Raise ``stop`` inside the executor's ``map`` where it last yielded; returns what it yields next."""
    throw = getattr(answers, "throw", None)
    if throw is None:  # not a generator: it cannot be told
        raise stop
    return throw(stop)

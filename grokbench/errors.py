"""Exceptions with a meaning for the command line: bad input (exit 2) or a failed run (exit 1)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class GrokbenchError(Exception):
    """Base class of grokbench's own errors."""

    exit_code = 1


class ConfigError(GrokbenchError):
    """Bad input: an unknown name, an invalid value, an unusable file. Nothing is run or written."""

    exit_code = 2


class RunError(GrokbenchError):
    """A run failed while executing."""

    exit_code = 1


class StoreError(GrokbenchError):
    """The store could not be written (a full disk, a read-only file system): the transaction was rolled back."""

    exit_code = 1


def one_line(text: str) -> str:
    """``text`` as one printable line: line breaks and other control characters escaped (``\\n``, ``\\x1e``)."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text.strip())


def describe(exc: BaseException) -> str:
    """``RuntimeError: first line of the message``: an exception as one line, for stored messages and notices."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def unknown_name(kind: str, name: str, known: Iterable[str]) -> ConfigError:
    """``unknown task 'modad-cls' (did you mean 'modadd-cls'?)`` with the known names as a fallback."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        hint = f" (did you mean '{close[0]}'?)"
    elif known:
        hint = f" (known: {', '.join(known)})"
    else:
        hint = f" (no {kind} is installed)"
    return ConfigError(f"unknown {kind} '{name}'{hint}")

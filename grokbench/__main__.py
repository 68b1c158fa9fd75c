"""``python -m grokbench`` and the ``grokbench`` command: SIGINT and SIGTERM raise KeyboardInterrupt, and are
remembered, before anything heavy is imported, so that a signal at any moment after start gives the one line and
exit 130 (as :func:`grokbench.cli.main` does later), neither a traceback nor 143. Before the handlers are installed
only the standard library's ``os``, ``signal``, ``sys``, ``contextlib`` and ``threading`` are imported."""

import os
import signal
import sys

from grokbench.recording import interrupts


def _aborted() -> None:
    """The one line and exit 130 for a signal that struck while the command line was importing. ``os._exit``: an
    interrupted import may leave CPython's 'unhandled KeyboardInterrupt' flag set (see cli._exit_interrupted)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        sys.stderr.write("error: aborted\n")
        sys.stderr.flush()
    finally:
        os._exit(130)


def main() -> None:
    """Install the handlers, then import and run the command line."""
    interrupts.install()
    try:
        from grokbench.cli import main as cli_main
    except KeyboardInterrupt:
        _aborted()
    except Exception:  # an import broken by a signal whose KeyboardInterrupt a library swallowed
        if interrupts.heard is None:
            raise
        _aborted()
    cli_main()


if __name__ == "__main__":
    main()

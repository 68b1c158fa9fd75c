"""``python -m grokbench``: a Ctrl-C or SIGTERM while the command line itself is importing gives the one line
and exit 130 (as :func:`grokbench.cli.main` does later), not a traceback nor 143."""

import signal
import sys


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


signal.signal(signal.SIGTERM, _terminated)
try:
    from grokbench.cli import main
except KeyboardInterrupt:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.stderr.write("error: aborted\n")
    sys.exit(130)

main()

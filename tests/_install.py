"""Installing a plugin package with pip, for real, into a directory of its own.

``pip install --target DIR`` builds and installs the package like any other
(wheel, dist-info, entry points) without touching the test virtualenv, so two
pytest-xdist workers never race and nothing needs uninstalling; a process sees
the package when DIR is on its path (``PYTHONPATH``, or ``sys.path`` in process).
The source is copied first so that building leaves no ``build/`` or
``*.egg-info`` in the checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


def pip_install(source: Path, workdir: Path) -> Path:
    """Install the package at ``source`` into ``workdir/site``; return that directory."""
    copy, site = workdir / "src-copy", workdir / "site"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".pytest_cache"))
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", "--target", str(site), str(copy)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return site


def env_with(site: Path) -> dict[str, str]:
    """The environment of a subprocess that sees the packages installed in ``site``."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(site) + (os.pathsep + path if path else "")}

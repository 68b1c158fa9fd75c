"""Every script in benchmarks/ still starts against the current code (its imports resolve, its options parse):
they are run by hand, so an API change would otherwise break them unnoticed (train_speed.py and
transformer_speed.py once imported a helper that had moved)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: cuda_check.py trains at import (it is one prepared script for a machine with a GPU): compiled only
SCRIPTS = sorted(p.name for p in (ROOT / "benchmarks").glob("*.py") if p.name != "cuda_check.py")


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_benchmark_script_starts(script):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--help"], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout


def test_the_cuda_check_compiles():
    import py_compile

    py_compile.compile(str(ROOT / "benchmarks" / "cuda_check.py"), doraise=True)

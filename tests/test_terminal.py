"""What a terminal shows: the runs table fitted to its width, live progress of suites, loggers refused before
training, and the small texts of show, resume and list. Real stores, real `grokbench` processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

#: 32 tiny runs of three models, so that the model parameters differ between rows as in a real store
MIXED = """
[suite]
name = "mixed"
seeds = [0, 1]

[defaults]
task = "modadd-cls"
optimizer = "adam"
set.task = { p = 11 }
set.train = { steps = 20, eval_every = 10 }

[[entries]]
name = "quadratic"
model = "quadratic"
regularizer = "adamw"
grid.model.width = [16, 32]
grid.regularizer.strength = [0.1, 1.0]

[[entries]]
name = "mlp"
model = "relu-mlp"
regularizer = "l2"
grid.model.width = [16, 32]
grid.regularizer.strength = [1e-3, 1e-2]

[[entries]]
name = "transformer"
model = "transformer"
regularizer = "none"
set.model = { d_model = 16 }
grid.optimizer.lr = [1e-3, 3e-3]
grid.train.batch_size = [32, 64]

[[entries]]
name = "quadratic-sgd"
model = "quadratic"
optimizer = "sgd"
regularizer = "l2"
grid.optimizer.lr = [0.1, 1.0]
grid.model.init_scale = [0.5, 2.0]
"""


def grokbench(*args: str, columns: int = 80, **kw) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": str(columns), "GROKBENCH_STORE": "unused-default.db"}
    return subprocess.run(
        [str(Path(sys.executable).with_name("grokbench")), *args], capture_output=True, text=True, env=env, timeout=600, **kw
    )


@pytest.fixture(scope="module")
def mixed_store(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("mixed")
    (folder / "mixed.toml").write_text(MIXED)
    done = grokbench("suite", "run", str(folder / "mixed.toml"), "--store", str(folder / "mixed.db"), cwd=folder)
    assert done.returncode == 0, done.stderr
    return folder / "mixed.db"


@pytest.mark.parametrize("width", [80, 120])
def test_runs_fits_the_terminal_and_says_what_it_left_out(mixed_store, width):
    out = grokbench("runs", "--store", str(mixed_store), columns=width)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert max(len(line) for line in lines) <= width
    # the columns equal on every run: one line above the table, not 32 times
    assert lines[0].startswith("same on all 32 runs: suite mixed, task modadd-cls,")
    header = next(line for line in lines if line.startswith("id "))
    rows = lines[lines.index(header) + 2 :]
    assert len(rows) == 32 and "task" not in header.split() and "model" in header.split()
    said = " ".join(lines[: lines.index(header)])
    assert "more columns than" in said and "--columns" in said and "optimizer.eps" in said
    # a missing value prints one way
    for word in ("nan", "None", "NaN"):
        assert word not in out.stdout.split()


def test_runs_columns_chooses_and_refuses_an_unknown_one(mixed_store):
    out = grokbench("runs", "--store", str(mixed_store), "--columns", "id,model,model.d_model,task.p")
    assert out.returncode == 0, out.stderr
    header, _, *rows = out.stdout.splitlines()
    assert header.split() == ["id", "model", "model.d_model", "task.p"]
    cells = {tuple(r.split()[1:]) for r in rows}
    assert cells == {("quadratic", "—", "11"), ("relu-mlp", "—", "11"), ("transformer", "16", "11")}
    chosen = json.loads(grokbench("runs", "--store", str(mixed_store), "--columns", "id,task.p", "--json").stdout)
    assert len(chosen) == 32 and set(chosen[0]) == {"id", "task.p"} and chosen[0]["task.p"] == 11
    bad = grokbench("runs", "--store", str(mixed_store), "--columns", "id,model.widht")
    assert bad.returncode == 2 and bad.stdout == ""
    (line,) = bad.stderr.splitlines()
    assert line.startswith("error: unknown column 'model.widht'; did you mean 'model.width'? (known: id, suite,")


def test_runs_of_one_run_is_a_field_per_line(mixed_store):
    out = grokbench("runs", "--store", str(mixed_store), "--limit", "1", columns=40)
    fields = dict(line.split(None, 1) for line in out.stdout.splitlines())
    assert fields["suite"] == "mixed" and fields["t_generalize"] == "—" and fields["steps"] == "20"

"""What a terminal shows: the runs table fitted to its width, live progress of suites, loggers refused before
training, and the small texts of show, resume and list. Real stores, real `grokbench` processes."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
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


PROGRESS = """
[suite]
name = "progress"
seeds = [0, 1]

[defaults]
task = "modadd-cls"
model = "quadratic"
optimizer = "adam"
regularizer = "adamw"
set.task = { p = 23, train_fraction = 0.6 }
set.model = { width = 128 }
set.optimizer = { lr = 3e-3 }
set.train = { steps = 6000, eval_every = 50 }

[[entries]]
name = "decay"
grid.regularizer.strength = [0.5, 1.0]
"""

FRAME = re.compile(r"(\d+)/(\d+) steps \[[\d:]+, runs: (\d+) done, (\d+) running, (\d+) left; (ETA [\d:]+|ETA estimating)\]")


def in_a_terminal(args: list[str], cwd: Path) -> tuple[list[str], str, int]:
    """Run `grokbench ARGS` with stderr on a pseudo-terminal of 160 columns (so that its progress is on);
    the progress frames it drew, its stdout and exit code."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 160, 0, 0))
    command = [str(Path(sys.executable).with_name("grokbench")), *args]
    proc = subprocess.Popen(command, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    drawn = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal closed: every process that held it ended
            break
        if not chunk:
            break
        drawn += chunk
    os.close(master)
    out = proc.stdout.read().decode() if proc.stdout else ""
    return re.split(r"[\r\n]", drawn.decode(errors="replace")), out, proc.wait(timeout=600)


def test_suite_progress_moves_while_runs_train_and_names_the_next_command(tmp_path):
    (tmp_path / "progress.toml").write_text(PROGRESS)
    args = ["suite", "run", "progress.toml", "--store", "p.db", "--executor", "process", "--jobs", "2"]
    frames, out, code = in_a_terminal(args, tmp_path)
    assert code == 0, out
    seen = [m.groups() for m in map(FRAME.search, frames) if m]
    assert seen and all(int(total) == 4 * 6000 for _, total, *_ in seen)
    # before any run finished, the steps of the runs in training moved (read from the store as workers report)
    early = [int(n) for n, _, done, running, *_ in seen if done == "0" and int(running) > 0]
    assert len(set(early)) >= 2 and early == sorted(early) and early[-1] > 0
    # no ETA before there is a rate to estimate it from; then one
    etas = [eta for *_, eta in seen]
    assert etas[0] == "ETA estimating" and any(e != "ETA estimating" for e in etas)
    assert etas.index("ETA estimating") < min(i for i, e in enumerate(etas) if e != "ETA estimating")
    assert seen[-1][:5] == ("24000", "24000", "4", "0", "0")
    assert out.splitlines()[-1] == "next: grokbench report --suite progress --store p.db"


# --- loggers -------------------------------------------------------------------------------------------------------

QUICK = ["run", "-t", "modadd-cls", "-m", "quadratic", "--set", "task.p=11", "--set", "train.steps=40", "--set", "train.eval_every=10"]


def refused_before_training(tmp_path: Path, done: subprocess.CompletedProcess[str], start: str) -> None:
    """Exit 2, one line on stderr, nothing written: no store, no log folder."""
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith(start), line
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "uri, start",
    [
        ("file:///{tmp}/mlruns", "error: logger 'mlflow' cannot start: MLFLOW_TRACKING_URI=file:///"),
        ("http://127.0.0.1:{port}", "error: logger 'mlflow' cannot start: no MLflow tracking server answers at http://127.0.0.1:"),
    ],
)
def test_an_mlflow_logger_that_cannot_start_is_refused_before_training(tmp_path, uri, start):
    pytest.importorskip("mlflow")
    import socket

    with socket.socket() as free:  # a port nothing listens on
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri.format(tmp=work, port=port)}
    done = subprocess.run(
        [str(Path(sys.executable).with_name("grokbench")), *QUICK, "--store", "s.db", "--logger", "mlflow"],
        cwd=work, env=env, capture_output=True, text=True, timeout=600,
    )
    refused_before_training(work, done, start)


def test_a_missing_wandb_is_refused_before_training(tmp_path):
    hidden = (  # wandb as if not installed: its module cannot be found
        "import importlib.util, sys; real = importlib.util.find_spec; "
        "importlib.util.find_spec = lambda name, *a: None if name.split('.')[0] == 'wandb' else real(name, *a); "
        "from grokbench.cli import main; sys.argv[0] = 'grokbench'; main()"
    )
    done = subprocess.run(
        [sys.executable, "-c", hidden, *QUICK, "--store", "s.db", "--logger", "wandb"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    refused_before_training(tmp_path, done, "error: logger 'wandb' needs wandb, which is not installed: pip install 'grokbench[wandb]'")


def test_the_readme_mlflow_line_runs_as_printed_and_mlflow_stays_off_the_terminal(tmp_path):
    mlflow = pytest.importorskip("mlflow")
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    (line,) = [line for line in readme.splitlines() if line.startswith("MLFLOW_TRACKING_URI=")]
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "GROKBENCH_STORE")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    done = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # MLflow's INFO lines ("Creating initial MLflow database tables...") not on the terminal
    run_id = next(line.split()[1] for line in done.stdout.splitlines() if line.startswith("run "))
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (found,) = client.search_runs([client.get_experiment_by_name("grokbench").experiment_id])
    assert found.data.tags["grokbench.run_id"] == run_id and found.data.params["task.p"] == "23"
    assert found.info.status == "FINISHED" and found.data.metrics["train_acc"] == 1.0


def test_a_wandb_offline_run_reads_back_with_read_offline_run(tmp_path):
    pytest.importorskip("wandb")
    import sqlite3
    import time

    from grokbench_plugins.loggers.loggers import read_offline_run

    env = {k: v for k, v in os.environ.items() if k != "WANDB_API_KEY"}
    done = subprocess.run(
        [str(Path(sys.executable).with_name("grokbench")), *QUICK, "--store", "s.db", "--logger", "wandb", "--json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)["run_id"]
    (path,) = (tmp_path / "s.db.logs" / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb")
    deadline = time.monotonic() + 60
    while (run := read_offline_run(path))["exit_code"] is None and time.monotonic() < deadline:
        time.sleep(0.5)  # wandb-core, a process of its own, may still be writing the file's end
    with sqlite3.connect(tmp_path / "s.db") as db:
        stored = dict(db.execute("SELECT step, value FROM curves WHERE run_id = ? AND name = 'train_acc'", (run_id,)).fetchall())
    assert [h["_step"] for h in run["history"]] == sorted(stored) == [0, 10, 20, 30, 40]
    assert [h["train_acc"] for h in run["history"]] == pytest.approx([stored[s] for s in sorted(stored)])
    assert run["config"]["task"]["params"]["p"] == 11 and run["config"]["model"]["name"] == "quadratic"
    assert run["summary"]["status"] == "completed" and run["exit_code"] == 0


# --- show, resume, wall time, list ---------------------------------------------------------------------------------


def test_show_resume_and_the_wall_time_said_one_way(tmp_path):
    seeds = grokbench(*QUICK, "--seeds", "0,1", "--store", "s.db", cwd=tmp_path)
    assert seeds.returncode == 0, seeds.stderr
    walls = [line for line in seeds.stdout.splitlines() if line.startswith("wall time (s)")]
    stored = {r["id"]: r for r in json.loads(grokbench("runs", "--store", "s.db", "--json", cwd=tmp_path).stdout)}
    assert len(walls) == 2 == len(stored)
    # the summary's number is the run's wall_seconds (its share), as in --json, `runs` and the store
    shares = sorted(float(line.split()[3]) for line in walls)
    assert shares == pytest.approx(sorted(r["wall_seconds"] for r in stored.values()), abs=1e-3)
    total = float(walls[0].split("its share of ")[1].split()[0])
    assert all("shared by 2 seeds trained together" in line for line in walls)
    # each share is printed to 1 ms: their sum may be off by half a millisecond a seed
    assert sum(shares) == pytest.approx(total, rel=0.01, abs=0.0005 * len(shares) + 1e-4)
    run_id = next(iter(stored))
    shown = grokbench("show", run_id, "--store", "s.db", cwd=tmp_path)
    assert "curves (5 evaluations, every evaluation shown):" in shown.stdout
    resumed = grokbench("resume", run_id, "--store", "s.db", "--steps", "500", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert any(line.startswith("final ‖θ‖∞ ") for line in resumed.stdout.splitlines())  # as `run` prints it
    shown = grokbench("show", run_id, "--store", "s.db", cwd=tmp_path)
    assert "curves (51 evaluations, every 2nd evaluation shown):" in shown.stdout


def test_list_fits_100_columns_with_whole_descriptions_and_its_help_names_every_kind(tmp_path):
    listed = grokbench("list", cwd=tmp_path)
    assert listed.returncode == 0 and max(len(line) for line in listed.stdout.splitlines()) <= 100
    data = json.loads(grokbench("list", "--json", cwd=tmp_path).stdout)
    (adamw,) = [r for r in data["regularizers"] if r["name"] == "adamw"]
    # the docstring's first paragraph, not its first line (which stops mid-sentence)
    assert adamw["description"].startswith("Decoupled weight decay θ ← (1 − ηλ) θ before each step: ")
    words = " ".join(listed.stdout.split())
    assert " ".join(adamw["description"].split()[:12]) in words
    helped = " ".join(grokbench("list", "--help", cwd=tmp_path).stdout.split())
    for kind in ("task", "model", "regularizer", "optimizer", "metric", "preset", "executor", "logger", "benchmark"):
        assert kind in helped, kind
        assert data[kind + "s"], kind  # it lists that kind

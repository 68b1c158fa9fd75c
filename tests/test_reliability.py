"""Hostile input, refused as promised: one line on stderr naming the bad value, exit code 2, no traceback,
nothing trained, no file created or changed. The cases are grouped by category (docs/reliability.md counts them)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing, contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

import grokbench
from grokbench import cli as cli_module
from grokbench.reporting.baseline import BASELINE_FORMAT
from grokbench.storage.store import Store

RUN = [
    "run",
    "-t",
    "modadd-cls",
    "-m",
    "quadratic",
    "--set",
    "task.p=7",
    "--set",
    "model.width=8",
    "--set",
    "train.steps=2",
    "--quiet",
]

#: a suite of 2 runs that trains in a fraction of a second; NAME is replaced by the entries' names
SUITE = """
[suite]
name = "hostile"
seeds = [0]

[defaults]
task = "modadd-cls"
model = "quadratic"
optimizer = "adam"
set.task = { p = 7, train_fraction = 0.6 }
set.model = { width = 8 }
set.train = { steps = 20, eval_every = 10 }

[[entries]]
name = "adamw"
regularizer = "adamw"

[[entries]]
name = "l2"
regularizer = "l2"
"""


def invoke(*args):
    return CliRunner().invoke(cli_module.cli, [str(a) for a in args])


def snapshot(root: Path) -> dict[str, object]:
    """Every file under ``root``: its bytes (a symlink: its target), to show that nothing changed."""
    out: dict[str, object] = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            out[str(path)] = ("link", os.readlink(path))
        elif path.is_file():
            out[str(path)] = path.read_bytes()
        elif path.is_dir():
            out[str(path)] = "dir"
    return out


def assert_refused(result, *needles: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output and result.stdout == ""
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def refused_untouched(root: Path, args, *needles: str) -> str:
    before = snapshot(root)
    line = assert_refused(invoke(*args), *needles)
    assert snapshot(root) == before
    return line


# ------------------------------------------------------------ values no run can take

VALUES = [
    (["--seed", "9" * 30], "seed", "64 bits"),
    (["--seed", "-" + "9" * 30], "seed", "64 bits"),
    (["--set", "task.p=" + "9" * 30], "task.p", "64 bits"),
    (["--set", "seed=" + "9" * 25], "seed", "64 bits"),
    (["--set", "task.split_seed=" + "9" * 25], "task.split_seed", "64 bits"),
    (["--set", "train.steps=" + "9" * 25], "train.steps", "64 bits"),
    (["--set", "model.width=" + "9" * 25], "model.width", "64 bits"),
    (["--set", "task.p=" + "9" * 5000], "task.p", ""),  # more digits than Python converts
    (["--set", "optimizer.lr=1e400"], "optimizer.lr", "finite"),
    (["--set", "optimizer.lr=-1e400"], "optimizer.lr", ""),
    (["--set", "optimizer.lr=NaN"], "optimizer.lr", ""),
    (["--set", "model.init_scale=Infinity"], "model.init_scale", "finite"),
    (["--set", "regularizer.strength=1e999"], "regularizer.strength", "finite"),
    (["--set", "task.p=100000"], "needs about", "available"),  # p^2 inputs: terabytes
    (["--set", "model.width=100000000000"], "needs about", "available"),
    (["--set", "task.p=3000000000"], "needs about", "available"),
    (["--preset", ""], "preset", "empty"),
    (["--preset", "  "], "preset", "empty"),
    (["--device", "mps"], "mps", "not available"),
    (["--device", "mps:0"], "mps", "not available"),
    (["--device", "cuda:99"], "cuda:99", "not available"),
    (["--device", "meta"], "meta", "unsupported"),
    (["--seeds", "0-100000"], "100,001 runs", "--max-runs"),
    (["--seeds", "0-99999999999999999999999"], "seeds", "64 bits"),
    (["--seeds", "0-20", "--max-runs", "5"], "21 runs", "limit of 5"),
]


@pytest.mark.parametrize("args, what, why", VALUES, ids=[" ".join(a)[:40] for a, *_ in VALUES])
def test_values_no_run_can_take_are_refused_before_anything_runs(tmp_path, args, what, why):
    refused_untouched(tmp_path, [*RUN, *args, "--store", tmp_path / "s.db"], what, why)


def test_an_empty_store_path_is_refused(tmp_path):
    refused_untouched(tmp_path, [*RUN, "--store", ""], "store", "empty")
    for args in (
        ["runs"],
        ["show", "abc"],
        ["report", "--out", tmp_path / "r"],
        ["export", "--format", "csv", "--out", tmp_path / "x"],
    ):
        refused_untouched(tmp_path, [*args, "--store", ""], "store", "empty")


# ------------------------------------------------------------ stores and output folders


@pytest.fixture
def stored(tmp_path):
    """A store with two runs (ids known), in its own folder."""
    folder = tmp_path / "db"
    folder.mkdir()
    path = folder / "s.db"
    ids = [json.loads(invoke(*RUN, "--seed", s, "--store", path, "--json").stdout)["run_id"] for s in (0, 1)]
    return path, ids


@contextmanager
def read_only(folder: Path):
    """``folder`` made read-only for the block: a read-only bind mount as root, else permissions (skipped if ignored)."""
    if os.geteuid() == 0:
        mounted = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True).returncode == 0
        if (
            mounted
            and subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], capture_output=True).returncode == 0
        ):
            try:
                yield
            finally:
                subprocess.run(["umount", str(folder)], check=True)
            return
        if mounted:
            subprocess.run(["umount", str(folder)], check=True)
        pytest.skip("root without mount: a read-only folder cannot be simulated")
    modes = {p: p.stat().st_mode for p in [folder, *folder.iterdir()]}
    for p in modes:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        yield
    finally:
        for p, mode in modes.items():
            p.chmod(mode)


def test_a_read_only_store_is_refused_before_training_and_stays_readable(tmp_path, stored):
    path, ids = stored
    with read_only(path.parent):
        before = snapshot(path.parent)
        refused_untouched(tmp_path, [*RUN, "--store", path], "read-only", str(path))
        suite = tmp_path / "s.toml"
        suite.write_text(SUITE)
        refused_untouched(tmp_path, ["suite", "run", suite, "--store", path], "read-only")
        listing = invoke("runs", "--store", path, "--json")
        assert listing.exit_code == 0 and {r["id"] for r in json.loads(listing.stdout)} == set(ids)
        shown = invoke("show", ids[0][:5], "--store", path)
        assert shown.exit_code == 0 and ids[0] in shown.stdout
        report = invoke("report", "--store", path, "--out", tmp_path / "rep", "--no-plots")
        assert report.exit_code == 0, report.output
        assert "leaderboard" in (tmp_path / "rep" / "leaderboard.md").read_text()
        assert snapshot(path.parent) == before  # no -wal, no -shm, nothing changed
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "s.db",
        "s.db.checkpoints",
    ]  # the checkpoints of the stored runs


def test_resume_on_a_read_only_store_is_refused_as_run_is(tmp_path, stored):
    path, ids = stored
    with read_only(path.parent):
        line = refused_untouched(tmp_path, ["resume", ids[0], "--steps", "50", "--store", path], "read-only", str(path))
        assert "nothing was resumed" in line and "unable to open" not in line and "not a grokbench store" not in line


def test_a_zero_byte_file_is_not_turned_into_a_store(tmp_path):
    empty = tmp_path / "empty.db"
    empty.touch()
    for args in (
        ["runs"],
        ["show", "ab"],
        ["report", "--out", tmp_path / "r"],
        ["export", "--format", "csv", "--out", tmp_path / "x"],
    ):
        refused_untouched(tmp_path, [*args, "--store", empty], "empty file")
    assert empty.stat().st_size == 0


@pytest.mark.parametrize("device", ["/dev/null", "/dev/zero"])
def test_a_device_as_store_is_refused(tmp_path, device):
    refused_untouched(tmp_path, [*RUN, "--store", device], device, "not a regular file")
    refused_untouched(tmp_path, ["runs", "--store", device], "not a regular file")


def test_show_takes_underscore_and_percent_literally(tmp_path, stored):
    path, ids = stored
    for pattern in ("_", "____", "%", ids[0][:3] + "%"):
        refused_untouched(tmp_path, ["show", pattern, "--store", path], f"no run '{pattern}'")
    assert ids[0] in invoke("show", ids[0][:6], "--store", path).stdout


def _out_cases(tmp_path: Path) -> list[tuple[object, str]]:
    a_file = tmp_path / "a-file.txt"
    a_file.write_text("keep me")
    unwritable = tmp_path / "locked"
    unwritable.mkdir()
    return [
        (a_file, "a-file.txt"),
        ("/dev/null", "not a folder"),
        ("/proc/grokbench-out", "cannot create"),
        ("", "empty"),
    ]


@pytest.mark.parametrize("command", ["report", "export"])
def test_out_that_is_a_file_a_device_or_unusable_is_refused(tmp_path, stored, command):
    path, _ = stored
    extra = ["--format", "csv"] if command == "export" else ["--no-plots"]
    for out, needle in _out_cases(tmp_path):
        refused_untouched(tmp_path, [command, *extra, "--store", path, "--out", out], needle)
    assert (tmp_path / "a-file.txt").read_text() == "keep me"


def test_an_unwritable_out_folder_is_refused(tmp_path, stored):
    path, _ = stored
    out = tmp_path / "out"
    out.mkdir()
    with read_only(out):
        for args in (["report", "--no-plots"], ["export", "--format", "csv"]):
            refused_untouched(tmp_path, [*args, "--store", path, "--out", out], "not writable")
        refused_untouched(tmp_path, ["report", "--store", path, "--out", out / "sub"], "cannot create")


@pytest.mark.parametrize(
    "command, name",
    [("report", "leaderboard.md"), ("report", "baseline.json"), ("export", "runs.csv"), ("export", "curves.csv")],
)
def test_report_and_export_never_write_through_a_symlink(tmp_path, stored, command, name):
    path, _ = stored
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (out / name).symlink_to(victim)
    extra = ["--format", "csv"] if command == "export" else ["--no-plots"]
    refused_untouched(tmp_path, [command, *extra, "--store", path, "--out", out], "symlink", name)
    assert victim.read_text() == "precious"


def test_report_and_export_replace_their_files_atomically(tmp_path, stored):
    path, _ = stored
    out = tmp_path / "out"
    assert invoke("export", "--format", "csv", "--store", path, "--out", out).exit_code == 0
    (out / "runs.csv").write_text("stale")
    assert invoke("export", "--format", "csv", "--store", path, "--out", out).exit_code == 0
    assert (out / "runs.csv").read_text().startswith("id,") and not list(out.glob(".*.tmp"))


# ------------------------------------------------------------ baselines


def _baseline(**changes):
    entry = {
        "group": "G1",
        "task": "modadd-cls",
        "entry": "adamw",
        "seeds": 1,
        "generalized": 1,
        "success_rate": 1.0,
        "median_t_generalize": 10.0,
        "final_test_acc": 1.0,
    }
    doc = {
        "format": BASELINE_FORMAT,
        "grokbench": grokbench.__version__,
        "suite": None,
        "compare": ["regularizer", "optimizer"],
        "entries": [entry],
    }
    for key, value in changes.items():
        if key.startswith("entry_"):
            name = key[len("entry_") :]
            if value is KeyError:
                entry.pop(name)
            else:
                entry[name] = value
        else:
            doc[key] = value
    return json.dumps(doc)


BASELINES = [
    (_baseline(entries={"a": 1}), "entries"),
    (_baseline(entries="nope"), "entries"),
    (_baseline(entries=[1, 2]), "entries.0"),
    (_baseline(entry_task=KeyError), "entries.0.task"),
    (_baseline(entry_median_t_generalize=KeyError, entry_seeds=KeyError), "entries.0.seeds"),
    (_baseline(entry_seeds="3"), "entries.0.seeds"),
    (_baseline(entry_success_rate="high"), "entries.0.success_rate"),
    (_baseline(entry_success_rate=7), "entries.0.success_rate"),
    (_baseline(entry_median_t_generalize=-5), "entries.0.median_t_generalize"),
    (_baseline(entry_generalized=True), "entries.0.generalized"),
    (_baseline(entry_extra=1), "entries.0.extra"),
    (_baseline(format=99), "format"),
    (_baseline(format=str(BASELINE_FORMAT)), "format"),
    (_baseline(grokbench="0.0.1"), "grokbench 0.0.1"),
    (json.dumps([1, 2, 3]), "baseline"),
    (json.dumps(None), "baseline"),
    ("{not json", "invalid JSON"),
    (
        '{"format": %d, "grokbench": "%s", "compare": [], "entries": [{"group": "G1", "task": "t", "entry": "e", "seeds": 1, "generalized": 0, "success_rate": NaN}]}'
        % (BASELINE_FORMAT, grokbench.__version__),
        "success_rate",
    ),
    ("\xff\xfe", "baseline"),
]


@pytest.mark.parametrize("text, needle", BASELINES, ids=[f"baseline{i}" for i in range(len(BASELINES))])
def test_a_baseline_of_the_wrong_shape_is_refused(tmp_path, stored, text, needle):
    path, _ = stored
    baseline = tmp_path / "baseline.json"
    baseline.write_bytes(text.encode("latin-1") if text.startswith("\xff") else text.encode())
    refused_untouched(tmp_path, ["compare", "--baseline", baseline, "--store", path], needle)


@pytest.mark.parametrize("special", ["/dev/zero", "/dev/null"])
def test_a_baseline_that_is_not_a_regular_file_is_refused_without_reading_it(tmp_path, stored, special):
    refused_untouched(tmp_path, ["compare", "--baseline", special, "--store", stored[0]], "not a regular file")


def test_a_well_formed_baseline_still_compares(tmp_path, stored):
    path, _ = stored
    rep = invoke("report", "--store", path, "--out", tmp_path / "rep", "--no-plots")
    assert rep.exit_code == 0
    result = invoke("compare", "--baseline", tmp_path / "rep" / "baseline.json", "--store", path)
    assert result.exit_code == 0 and "0 regression(s)" in result.stdout


# ------------------------------------------------------------ suite files


def _suite(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hostile.toml"
    path.write_text(text)
    return path


GRID_1M = (
    "grid.task.train_fraction = ["
    + ", ".join(f"0.{i:04d}1" for i in range(1000))
    + "]\ngrid.model.init_scale = ["
    + ", ".join(f"{i + 1}.0" for i in range(1000))
    + "]"
)
SUITES = [
    (SUITE.replace('regularizer = "l2"', 'regularizer = "l2"\nset.train.device = "cuda:99"'), "cuda:99"),
    (SUITE.replace('regularizer = "l2"', 'regularizer = "l2"\nset.train.device = "mps"'), "mps"),
    (SUITE.replace('regularizer = "l2"', 'regularizer = "l2"\ngrid.seed = [0, 1]'), "grid.seed"),
    (SUITE.replace('regularizer = "l2"', 'regularizer = "l2"\nset.seed = 3'), "set.seed"),
    (SUITE.replace('regularizer = "l2"', 'regularizer = "l2"\n' + GRID_1M), "1,000,001 runs"),
    (SUITE.replace("seeds = [0]", "seeds = [" + ", ".join(map(str, range(20000))) + "]"), "40,000 runs"),
    (SUITE.replace("seeds = [0]", "seeds = [18446744073709551616]"), "64 bits"),
    (SUITE.replace("p = 7,", "p = 100000,"), "needs about"),
    (SUITE.replace("width = 8", "width = inf"), "finite"),
    (SUITE.replace("width = 8", "width = nan"), "finite"),
]


@pytest.mark.parametrize("text, needle", SUITES, ids=[f"suite{i}" for i in range(len(SUITES))])
def test_a_hostile_suite_file_is_refused_before_running(tmp_path, text, needle):
    path = _suite(tmp_path, text)
    refused_untouched(tmp_path, ["suite", "run", path, "--store", tmp_path / "s.db"], needle)


def test_max_runs_is_an_explicit_limit(tmp_path):
    path = _suite(tmp_path, SUITE)
    refused_untouched(
        tmp_path, ["suite", "run", path, "--store", tmp_path / "s.db", "--max-runs", "1"], "2 runs", "limit of 1"
    )
    assert invoke("suite", "run", path, "--store", tmp_path / "s.db", "--max-runs", "2").exit_code == 0


@pytest.mark.parametrize("special", ["/dev/zero", "/dev/null", "/dev/urandom"])
def test_a_suite_that_is_not_a_regular_file_is_refused_without_reading_it(tmp_path, special):
    refused_untouched(tmp_path, ["suite", "run", special, "--store", tmp_path / "s.db"], "not a regular file")


def test_an_oversized_or_binary_suite_file_is_refused(tmp_path):
    big = tmp_path / "big.toml"
    with open(big, "wb") as f:
        f.truncate(64 * 1024 * 1024)  # sparse: 64 MiB of zeros
    refused_untouched(tmp_path, ["suite", "run", big, "--store", tmp_path / "s.db"], "larger than")
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    refused_untouched(tmp_path, ["suite", "run", binary, "--store", tmp_path / "s.db"], "not UTF-8")


HOSTILE_NAMES = [
    "dollar $x^2$ and $\\\\frac{a}{",
    "pipe | column",
    "<script>alert(1)</script>",
    "line\\nbreak",
    "back`tick` *star* _u_",
]


def test_hostile_entry_names_are_escaped_in_markdown_and_plot_labels(tmp_path):
    entries = "".join(
        f'\n[[entries]]\nname = "{name}"\nregularizer = "l2"\nset.regularizer.strength = {i + 1}e-3\ngrid.task.train_fraction = [0.5, 0.6]\n'
        for i, name in enumerate(HOSTILE_NAMES)
    )
    text = SUITE[: SUITE.index("[[entries]]")] + entries
    path = _suite(tmp_path, text)
    store = tmp_path / "s.db"
    assert invoke("suite", "run", path, "--store", store).exit_code == 0
    result = invoke("report", "--suite", "hostile", "--store", store, "--out", tmp_path / "rep")
    assert result.exit_code == 0, result.output
    md = (tmp_path / "rep" / "leaderboard.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("|")]
    rows = [line for line in table if "modadd-cls" in line]
    assert len(rows) == 2 * len(HOSTILE_NAMES)  # one line per grid point: no newline broke a row
    columns = {line.count("|") - line.count("\\|") for line in table}
    assert len(columns) == 1  # no '|' in a name added a column
    assert "<script>" not in md and "&lt;script&gt;" in md
    assert "pipe \\| column" in md and "line break" in md
    assert list((tmp_path / "rep").glob("curves-*.png")) and list((tmp_path / "rep").glob("curves-*.svg"))
    svg = next((tmp_path / "rep").glob("curves-*.svg")).read_text()
    assert "$x^2$" in svg.replace("&#36;", "$") or "x^2" in svg  # drawn as text, not parsed as mathtext
    html = (tmp_path / "rep" / "leaderboard.html").read_text()
    assert "<script>alert" not in html


def test_the_store_stays_consistent_after_each_refusal(tmp_path, stored):
    """A refused command against an existing store leaves it byte for byte as it was, and valid."""
    path, ids = stored
    for args in ([*RUN, "--set", "optimizer.lr=1e400"], [*RUN, "--device", "mps"], [*RUN, "--seeds", "0-100000"]):
        refused_untouched(tmp_path, [*args, "--store", path])
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert set(Store(path, create=False).runs()["id"]) == set(ids)


# ------------------------------------------------------------ round 3: one safe writer (issue 28)


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim"
    victim.mkdir(exist_ok=True)
    (victim / "precious.txt").write_text("precious")
    return victim


@pytest.mark.parametrize("level", ["file", "folder", "deeper folder"])
def test_every_writer_refuses_a_symlink_at_each_level_below_its_root(tmp_path, level):
    """write_bytes, Batch, append_to and folder: a symlink at the file, at a folder below the root or
    at a folder below that is refused (ConfigError), and its target keeps its bytes."""
    from grokbench import files
    from grokbench.errors import ConfigError

    victim = _victim(tmp_path)
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    target = {
        "file": root / "a" / "precious.txt",
        "folder": root / "a" / "b" / "precious.txt",
        "deeper folder": root / "a" / "b" / "c" / "precious.txt",
    }[level]
    if level == "file":
        target.symlink_to(victim / "precious.txt")
    elif level == "folder":
        (root / "a" / "b").symlink_to(victim)
    else:
        (root / "a" / "b").mkdir()
        (root / "a" / "b" / "c").symlink_to(victim)
    source = tmp_path / "source.bin"
    source.write_bytes(b"new")
    before = snapshot(tmp_path)
    writers = [
        lambda: files.write_bytes(target, b"new", root=root),
        lambda: files.Batch(target.parent, root=root).add(target.name, "new") and files.Batch(target.parent, root=root),
        lambda: _commit(files.Batch(target.parent, root=root), target.name),
        lambda: files.append_to(target, root=root).write("new"),
        lambda: (
            files.folder(root, *target.relative_to(root).parts[:-1], "sub")
            if level != "file"
            else files.folder(root, *target.relative_to(root).parts)
        ),
    ]
    for write in writers:
        with pytest.raises(ConfigError, match="symlink"):
            write()
            raise ConfigError("symlink: the writer did not refuse")  # reached only when it wrote
    assert snapshot(tmp_path) == before and (victim / "precious.txt").read_text() == "precious"


def _commit(batch, name):
    batch.add(name, "new")
    return batch.commit()


def test_a_symlinked_root_the_user_chose_is_theirs(tmp_path):
    """The root itself is the user's choice (an --out that is a link to a bigger disk): written through."""
    from grokbench import files

    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    files.write_text(tmp_path / "link" / "a.txt", "one")
    assert (real / "a.txt").read_text() == "one"


def test_a_batch_leaves_the_previous_set_when_one_file_cannot_be_written(tmp_path, monkeypatch):
    """A disk that fills between two files of one output: neither is replaced, no temporary file is left."""
    import errno as errno_

    from grokbench import files
    from grokbench.errors import ConfigError

    files.Batch(tmp_path).add("runs.csv", "old runs") and None
    with files.Batch(tmp_path) as first:
        first.add("runs.csv", "old runs")
        first.add("curves.csv", "old curves")
    calls = []
    stage = files._stage

    def full(fd, name, fill):
        calls.append(name)
        if len(calls) == 2:
            raise OSError(errno_.ENOSPC, "No space left on device")
        return stage(fd, name, fill)

    monkeypatch.setattr(files, "_stage", full)
    batch = files.Batch(tmp_path)
    batch.add("runs.csv", "new runs")
    batch.add("curves.csv", "new curves")
    with pytest.raises(ConfigError, match="No space left"):
        batch.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.csv", "runs.csv"]
    assert (tmp_path / "runs.csv").read_text() == "old runs" and (tmp_path / "curves.csv").read_text() == "old curves"


def test_export_writes_both_files_or_neither(tmp_path, stored, monkeypatch):
    import errno as errno_

    from grokbench import files

    path, _ = stored
    out = tmp_path / "out"
    assert invoke("export", "--format", "csv", "--store", path, "--out", out).exit_code == 0
    before = snapshot(out)
    stage = files._stage
    monkeypatch.setattr(
        files,
        "_stage",
        lambda fd, name, fill: (
            (_ for _ in ()).throw(OSError(errno_.ENOSPC, "No space left on device"))
            if name == "curves.csv"
            else stage(fd, name, fill)
        ),
    )
    assert_refused(invoke("export", "--format", "csv", "--store", path, "--out", out), "curves.csv", "No space left")
    assert snapshot(out) == before


def test_a_refused_report_writes_no_plot(tmp_path, stored, monkeypatch):
    """The report makes every file (plots included) before it writes the first: a failure writes nothing."""
    from grokbench.errors import ConfigError
    from grokbench.reporting import report

    path, _ = stored
    out = tmp_path / "out"
    out.mkdir()

    def refuse(*args, **kwargs):
        raise ConfigError("refused while making the page")

    monkeypatch.setattr(report, "_html", refuse)
    assert_refused(invoke("report", "--store", path, "--out", out), "refused while making the page")
    assert list(out.iterdir()) == []


def test_checkpoint_out_never_writes_through_a_symlink_nor_onto_a_device(tmp_path):
    path = tmp_path / "s.db"
    run_id = json.loads(invoke(*RUN, "--set", "train.checkpoint_every=1", "--store", path, "--json").stdout)["run_id"]
    victim = _victim(tmp_path)
    link = tmp_path / "ckpt.safetensors"
    link.symlink_to(victim / "precious.txt")
    refused_untouched(tmp_path, ["checkpoint", run_id, "--store", path, "--out", link], "symlink")
    refused_untouched(tmp_path, ["checkpoint", run_id, "--store", path, "--out", "/dev/full"], "/dev/full")
    refused_untouched(
        tmp_path, ["checkpoint", run_id, "--store", path, "--out", tmp_path / ("n" * 300)], "File name too long"
    )
    done = invoke("checkpoint", run_id, "--store", path, "--out", tmp_path / "copy.safetensors")
    assert done.exit_code == 0 and (tmp_path / "copy.safetensors").stat().st_size > 0


def test_the_jsonl_logger_never_appends_through_a_symlink(tmp_path):
    from grokbench_plugins.loggers.loggers import JsonlLogger

    from grokbench.errors import ConfigError

    victim = _victim(tmp_path)
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "abc.jsonl").symlink_to(victim / "precious.txt")
    logger = JsonlLogger(JsonlLogger.Params(), directory=logs)
    with pytest.raises(ConfigError, match="symlink"):
        logger.start("abc", {}, {})
    assert (victim / "precious.txt").read_text() == "precious"


@pytest.mark.parametrize("planted", ["logs", "checkpoints-helper"])
def test_a_symlinked_store_logs_folder_is_refused_before_training(tmp_path, planted):
    """``<store>.logs`` as a symlinked folder: refused, nothing written (nor through it, nor a store created);
    ``folder()`` refuses the same for ``<store>.checkpoints`` (the checkpoint writer calls it)."""
    from grokbench import files
    from grokbench.errors import ConfigError

    victim = _victim(tmp_path)
    store = tmp_path / "s.db"
    if planted == "logs":
        (tmp_path / "s.db.logs").symlink_to(victim)
        refused_untouched(tmp_path, [*RUN, "--logger", "jsonl", "--store", store], "s.db.logs", "symlink")
    else:
        (tmp_path / "s.db.checkpoints").symlink_to(victim)
        with pytest.raises(ConfigError, match="symlink"):
            files.folder(tmp_path, "s.db.checkpoints", "run1")
    assert sorted(p.name for p in victim.iterdir()) == ["precious.txt"]


@pytest.mark.parametrize("kind", ["file", "device", "read-only"])
def test_an_unusable_log_dir_is_refused_before_training(tmp_path, kind):
    store = tmp_path / "s.db"
    if kind == "file":
        (tmp_path / "logs").write_text("x")
        refused_untouched(
            tmp_path, [*RUN, "--logger", "jsonl", "--log-dir", tmp_path / "logs", "--store", store], "is a file"
        )
    elif kind == "device":
        refused_untouched(
            tmp_path, [*RUN, "--logger", "jsonl", "--log-dir", "/dev/full", "--store", store], "/dev/full"
        )
    else:
        folder = tmp_path / "ro"
        folder.mkdir()
        with read_only(folder):
            refused_untouched(
                tmp_path, [*RUN, "--logger", "jsonl", "--log-dir", folder / "logs", "--store", store], "not writable"
            )
    assert not store.exists()


# ------------------------------------------------------------ round 3: refusals write nothing; benchmark versions

BENCH = """
[benchmark]
name = "mini"
version = VERSION
seeds = [0]
reference = "adamw"
baselines = ["adamw"]

[defaults]
model = "quadratic"
set.model = { width = 8 }
set.train = { steps = 20, eval_every = 10 }

[[tracks]]
name = "cls"
task = "modadd-cls"
set.task = { p = 7, train_fraction = 0.6 }
EXTRA
"""


def _bench(tmp_path: Path, name: str, version: int = 1, extra: str = "") -> Path:
    path = tmp_path / name
    path.write_text(BENCH.replace("VERSION", str(version)).replace("EXTRA", extra))
    return path


CUDA_TRACK = '[[tracks]]\nname = "gpu"\ntask = "modadd-cls"\nset.task = { p = 7 }\nset.train = { device = "cuda" }\n'
HUGE_TRACK = '[[tracks]]\nname = "huge"\ntask = "modadd-cls"\nset.task = { p = 100000 }\n'


@pytest.mark.parametrize("extra, needle", [(CUDA_TRACK, "cuda"), (HUGE_TRACK, "needs about")], ids=["cuda", "memory"])
def test_a_refused_bench_run_writes_nothing(tmp_path, extra, needle):
    """The track that cannot run here is refused before any plan is saved: an existing store keeps its bytes
    (the v1 report is unchanged), and none is created where there was none."""
    import torch

    if needle == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the track runs")
    store = tmp_path / "db" / "b.db"
    store.parent.mkdir()
    assert invoke("bench", "run", "-b", _bench(tmp_path, "v1.toml"), "--store", store, "-q").exit_code == 0
    refused_untouched(
        tmp_path, ["bench", "run", "-b", _bench(tmp_path, "bad.toml", 1, extra), "--store", store], needle
    )
    refused_untouched(
        tmp_path, ["bench", "run", "-b", tmp_path / "bad.toml", "--store", tmp_path / "db" / "new.db"], needle
    )
    assert not (tmp_path / "db" / "new.db").exists()


def test_benchmark_plans_are_keyed_by_name_and_version_and_checked_by_digest(tmp_path):
    store = tmp_path / "b.db"
    v1, v2 = _bench(tmp_path, "v1.toml"), _bench(tmp_path, "v2.toml", 2, HUGE_TRACK.replace("100000", "11"))
    assert invoke("bench", "run", "-b", v1, "--store", store, "-q").exit_code == 0
    assert invoke("bench", "run", "-b", v2, "--store", store, "-q").exit_code == 0
    names = set(Store(store).suites()["name"])
    assert {"mini@v1/adamw", "mini@v2/adamw"} <= names  # v2 did not replace v1's plan
    out1, out2 = tmp_path / "r1", tmp_path / "r2"
    assert invoke("bench", "report", "-b", v1, "--store", store, "--out", out1, "--no-plots").exit_code == 0
    assert invoke("bench", "report", "-b", v2, "--store", store, "--out", out2, "--no-plots").exit_code == 0
    assert "huge" not in (out1 / "benchmark.csv").read_text() and "huge" in (out2 / "benchmark.csv").read_text()
    edited = _bench(tmp_path, "edited.toml", 1, HUGE_TRACK.replace("100000", "11"))  # same name and version
    refused_untouched(
        tmp_path,
        ["bench", "report", "-b", edited, "--store", store, "--out", tmp_path / "r3"],
        "another file",
        "mini@v1",
    )
    v3 = _bench(tmp_path, "v3.toml", 3)
    refused_untouched(
        tmp_path,
        ["bench", "report", "-b", v3, "--store", store, "--out", tmp_path / "r3"],
        "no runs of mini@v3",
        "mini@v1, mini@v2",
    )


def test_interrupted_and_failed_runs_are_not_scored(tmp_path):
    """A stored seed that was interrupted (or failed) makes its cell incomplete, never a seed that did not generalize."""
    from grokbench.config.benchmark import load_benchmark
    from grokbench.plugin import manager
    from grokbench.reporting.scores import score_table

    store = tmp_path / "b.db"
    bench_file = _bench(tmp_path, "v1.toml")
    assert invoke("bench", "run", "-b", bench_file, "--store", store, "-q").exit_code == 0
    with closing(sqlite3.connect(store)) as conn, conn:
        conn.execute("UPDATE runs SET status = 'interrupted'")
    registry = manager.get_registry()
    [row] = score_table(Store(store), load_benchmark(str(bench_file), registry), ["adamw"], registry)
    cls = row.tracks[0]
    assert (cls.status, cls.runs, cls.interrupted, cls.successes, cls.steps, cls.median_step) == (
        "incomplete",
        0,
        1,
        0,
        [],
        None,
    )
    assert row.solved == 0
    out = tmp_path / "r"
    assert invoke("bench", "report", "-b", bench_file, "--store", store, "--out", out, "--no-plots").exit_code == 0
    assert "incomplete (0/1 finished; 1 interrupted)" in (out / "benchmark.md").read_text()


def test_a_driver_whose_runs_were_interrupted_exits_1_and_says_how_many(tmp_path, monkeypatch):
    from grokbench.driving import suites

    real = suites._Keeper.keep

    def interrupted(self, results):  # as when a signal stopped the worker that trained them
        for r in results:
            r.status = "interrupted"
        return real(self, results)

    monkeypatch.setattr(suites._Keeper, "keep", interrupted)
    suite = tmp_path / "s.toml"
    suite.write_text(SUITE)
    done = invoke("suite", "run", suite, "--store", tmp_path / "s.db")
    assert done.exit_code == 1, done.output
    assert "0 trained (0 failed, 2 interrupted)" in done.stdout
    assert "2 run(s) were interrupted" in done.stderr and "not counted as trained" in done.stderr


# ------------------------------------------------------------ round 3: signals, exit codes, unknown values


def test_the_interrupt_line_never_imports():
    """With nothing of grokbench's training loaded (a signal while torch imports), the line is 'aborted' and no
    module is imported to find it."""
    code = (
        "import sys, click\n"
        "from grokbench.cli import _interrupted_line\n"
        "before = set(sys.modules)\n"
        "try:\n    raise click.exceptions.Abort() from KeyboardInterrupt()\n"
        "except click.exceptions.Abort as exc:\n    line = _interrupted_line(exc)\n"
        "print(line, sorted(set(sys.modules) - before), 'torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "aborted [] False", done.stderr


def _started(tmp_path: Path, *extra: str) -> subprocess.Popen:
    """``grokbench run`` in a child process, returned once it has begun importing torch (its library is mapped)."""
    import time

    process = subprocess.Popen(
        [sys.executable, "-m", "grokbench", *RUN, "--set", "train.steps=200000", *extra, "--store", tmp_path / "s.db"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if "torch" in Path(f"/proc/{process.pid}/maps").read_text():
                return process
        except OSError:
            pass
        time.sleep(0.005)
    return process


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.15, 0.3, 0.6, 1.0])
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_an_early_signal_gives_one_line_and_exit_130(tmp_path, delay, sig):
    """A signal while torch imports (from the moment its library is loaded) or just after: one line, exit 130."""
    import signal
    import time

    process = _started(tmp_path)
    time.sleep(delay)
    process.send_signal(getattr(signal, sig))
    try:
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()  # a lost signal leaves it training: never leave it running
    assert process.returncode == 130 and "Traceback" not in err and len(err.strip().splitlines()) == 1, (
        process.returncode,
        err,
    )


def _until_handled(process: subprocess.Popen) -> None:
    """Wait until grokbench's SIGTERM handler is set (seen in /proc), its first act once Python has started and run
    ``site`` (the interpreter's own start, which no program can shorten, is not grokbench's to handle)."""
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            status = Path(f"/proc/{process.pid}/status").read_text()
        except OSError:
            return
        caught = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt")), 16)
        if caught & (1 << 14):  # SIGTERM (15) is caught
            return
        time.sleep(0.001)


@pytest.mark.parametrize("delay", [0.0, 0.1, 0.2, 0.3])
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("how", ["python -m grokbench", "grokbench"])
def test_a_signal_while_grokbench_itself_imports_gives_one_line_and_exit_130(tmp_path, delay, sig, how):
    """From the moment grokbench's handlers are in place, whichever way the command was started: they are installed
    before the command line is imported (``grokbench.__main__``, the console script's entry point too)."""
    import signal
    import time

    command = (
        [sys.executable, "-m", "grokbench"]
        if how.startswith("python")
        else [str(Path(sys.executable).parent / "grokbench")]
    )
    process = subprocess.Popen(
        [*command, *RUN, "--set", "train.steps=200000", "--store", tmp_path / "s.db"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    _until_handled(process)
    time.sleep(delay)
    process.send_signal(getattr(signal, sig))
    try:
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130 and "Traceback" not in err and len(err.strip().splitlines()) == 1, (
        process.returncode,
        err,
    )


SWALLOWED = """
import os, signal, sys
fired = []
def hook(event, args):  # once, while torch's extension imports numpy (from torch._C import *): torch swallows it
    if event == "import" and args[0] == "numpy._utils._convertions" and "torch._C" not in sys.modules and not fired:
        fired.append(1)
        os.kill(os.getpid(), signal.SIGTERM)
sys.addaudithook(hook)
sys.argv = ["grokbench", *sys.argv[1:]]
from grokbench.__main__ import main
main()
"""


def test_a_signal_that_torch_swallows_still_stops_the_command(tmp_path):
    """torch's extension catches every error while it imports numpy, KeyboardInterrupt included, and goes on: the
    command must not train on (it did), nor die in a half-imported module's traceback."""
    script = tmp_path / "swallowed.py"
    script.write_text(SWALLOWED)
    process = subprocess.Popen(
        [sys.executable, script, *RUN, "--set", "train.steps=200000", "--store", tmp_path / "s.db"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130 and "Traceback" not in err and err.strip().splitlines()[-1] == "error: aborted", (
        process.returncode,
        err,
    )
    runs = Store(tmp_path / "s.db").runs() if (tmp_path / "s.db").exists() else []
    assert len(runs) == 0


def test_a_second_signal_during_shutdown_still_exits_130(tmp_path):
    import signal
    import time

    process = subprocess.Popen(
        [sys.executable, "-m", "grokbench", *RUN, "--set", "train.steps=200000", "--store", tmp_path / "s.db"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    time.sleep(3)
    process.send_signal(signal.SIGTERM)
    time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in err, (process.returncode, err)


def test_an_unknown_status_is_refused_with_the_known_ones(tmp_path, stored):
    path, _ = stored
    refused_untouched(
        tmp_path,
        ["runs", "--status", "complete", "--store", path],
        "unknown status 'complete'",
        "completed, diverged, stalled, failed, interrupted, running",
    )


def test_names_too_long_are_exit_2_and_one_line(tmp_path, stored):
    path, _ = stored
    refused_untouched(
        tmp_path, ["export", "--format", "csv", "--store", path, "--out", tmp_path / ("x" * 300)], "too long"
    )
    deep = tmp_path.joinpath(*["d" * 200] * 25)
    refused_untouched(tmp_path, ["export", "--format", "csv", "--store", path, "--out", deep], "too long")


def test_a_deleted_current_folder_is_one_line_and_exit_2(tmp_path):
    gone = tmp_path / "gone"
    gone.mkdir()
    code = (
        f"import os, sys\nos.chdir({str(gone)!r})\nos.rmdir({str(gone)!r})\n"
        "sys.argv = ['grokbench', 'list']\nfrom grokbench.cli import main\nmain()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (
        done.returncode == 2
        and done.stderr.startswith("error: the current folder no longer exists")
        and done.stderr.count("\n") == 1
    ), done.stderr


WORKER_SUITE = """
[suite]
name = "busy"
seeds = [0, 1]

[defaults]
task = "modadd-cls"
model = "quadratic"
regularizer = "adamw"
set.task = { p = 23, train_fraction = 0.7 }
set.model = { width = 64 }
set.optimizer = { lr = 3e-3 }
set.train = { steps = 4000, eval_every = 20, early_stop = true }

[[entries]]
name = "a"
set.regularizer.strength = 1.0

[[entries]]
name = "b"
set.regularizer.strength = 0.5
"""


def test_sigterm_to_one_busy_worker_counts_its_runs_interrupted_and_a_rerun_trains_only_those(tmp_path):
    """A real worker of `suite run --executor process --jobs 2`, found by the pid its runs record in the store, gets
    SIGTERM while it trains: the driver says how many runs were interrupted and exits 1 (never 0, never "trained"),
    and the next invocation trains exactly the runs not finished."""
    suite = tmp_path / "busy.toml"
    suite.write_text(WORKER_SUITE)
    store = tmp_path / "s.db"
    command = [sys.executable, "-m", "grokbench", "suite", "run", str(suite), "--store", str(store),
               "--executor", "process", "--jobs", "2", "-q"]  # fmt: skip
    driver = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim = None
    deadline = time.monotonic() + 240
    try:
        while victim is None and time.monotonic() < deadline and driver.poll() is None:
            time.sleep(0.2)
            if not store.exists():
                continue
            try:
                with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=1) as conn:
                    rows = conn.execute("SELECT pid FROM runs WHERE status = 'running' AND steps >= 40").fetchall()
            except sqlite3.Error:
                continue
            pids = {pid for (pid,) in rows if pid and pid != driver.pid}
            victim = min(pids) if pids else None
        assert victim is not None, "no worker was seen training"
        os.kill(victim, signal.SIGTERM)
        out, err = driver.communicate(timeout=240)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 1, (driver.returncode, out, err)
    with sqlite3.connect(store) as conn:
        statuses = dict(conn.execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall())
    killed = statuses.get("interrupted", 0)
    assert killed >= 1, (statuses, out, err)
    assert f"{killed} interrupted" in out and "Traceback" not in err
    left = 4 - statuses.get("completed", 0)
    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"{left} trained" in again.stdout
    with sqlite3.connect(store) as conn:
        assert conn.execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall() == [("completed", 4)]

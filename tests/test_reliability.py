"""Hostile input, refused as promised: one line on stderr naming the bad value, exit code 2, no traceback,
nothing trained, no file created or changed. The cases are grouped by category (docs/reliability.md counts them)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from contextlib import closing, contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

import grokbench
from grokbench import cli as cli_module
from grokbench.reporting.baseline import BASELINE_FORMAT
from grokbench.storage.store import Store

RUN = ["run", "-t", "modadd-cls", "-m", "quadratic", "--set", "task.p=7", "--set", "model.width=8", "--set", "train.steps=2", "--quiet"]

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
    for args in (["runs"], ["show", "abc"], ["report", "--out", tmp_path / "r"], ["export", "--format", "csv", "--out", tmp_path / "x"]):
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
        if mounted and subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], capture_output=True).returncode == 0:
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
    assert sorted(p.name for p in path.parent.iterdir()) == ["s.db", "s.db.checkpoints"]  # the checkpoints of the stored runs


def test_a_zero_byte_file_is_not_turned_into_a_store(tmp_path):
    empty = tmp_path / "empty.db"
    empty.touch()
    for args in (["runs"], ["show", "ab"], ["report", "--out", tmp_path / "r"], ["export", "--format", "csv", "--out", tmp_path / "x"]):
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
    return [(a_file, "a-file.txt"), ("/dev/null", "not a folder"), ("/proc/grokbench-out", "cannot create"), ("", "empty")]


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


@pytest.mark.parametrize("command, name", [("report", "leaderboard.md"), ("report", "baseline.json"), ("export", "runs.csv"), ("export", "curves.csv")])
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
    entry = {"group": "G1", "task": "modadd-cls", "entry": "adamw", "seeds": 1, "generalized": 1, "success_rate": 1.0, "median_t_generalize": 10.0, "final_test_acc": 1.0}
    doc = {"format": BASELINE_FORMAT, "grokbench": grokbench.__version__, "suite": None, "compare": ["regularizer", "optimizer"], "entries": [entry]}
    for key, value in changes.items():
        if key.startswith("entry_"):
            name = key[len("entry_"):]
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
    ('{"format": %d, "grokbench": "%s", "compare": [], "entries": [{"group": "G1", "task": "t", "entry": "e", "seeds": 1, "generalized": 0, "success_rate": NaN}]}'
     % (BASELINE_FORMAT, grokbench.__version__), "success_rate"),
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


GRID_1M = 'grid.task.train_fraction = [' + ", ".join(f"0.{i:04d}1" for i in range(1000)) + "]\ngrid.model.init_scale = [" + ", ".join(f"{i + 1}.0" for i in range(1000)) + "]"
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
    refused_untouched(tmp_path, ["suite", "run", path, "--store", tmp_path / "s.db", "--max-runs", "1"], "2 runs", "limit of 1")
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


HOSTILE_NAMES = ["dollar $x^2$ and $\\\\frac{a}{", "pipe | column", "<script>alert(1)</script>", "line\\nbreak", "back`tick` *star* _u_"]


def test_hostile_entry_names_are_escaped_in_markdown_and_plot_labels(tmp_path):
    entries = "".join(f'\n[[entries]]\nname = "{name}"\nregularizer = "l2"\nset.regularizer.strength = {i + 1}e-3\ngrid.task.train_fraction = [0.5, 0.6]\n' for i, name in enumerate(HOSTILE_NAMES))
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

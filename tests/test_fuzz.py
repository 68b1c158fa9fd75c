"""A property-based fuzzer (hypothesis) over ``--set`` values, option strings, suite documents, baselines, loggers,
benchmark files and checkpoint files.

The promise, for every input: exit 0; or exit 2 with exactly one line on stderr, no traceback, and the
store and every other file unchanged. (``compare`` may also exit 1 on a regression, with one line.)
Bounded so that the suite stays fast: in-process CliRunner, one step (20 in a suite), at most 8 runs, and a
machine of 16 MiB as far as the memory estimate knows, so that any large value is refused, not trained (the
largest run it lets through, p = 100 or width 15,000, trains in well under a second; with 256 MiB one example
could train for 15 s).
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grokbench import cli as cli_module
from grokbench.training import resources as limits

from .test_reliability import SUITE, snapshot

#: examples per property; GROKBENCH_FUZZ_EXAMPLES=1000 for a longer campaign (docs/reliability.md)
FUZZ = settings(
    max_examples=int(os.environ.get("GROKBENCH_FUZZ_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
TINY = ["--set", "task.p=5", "--set", "model.width=4", "--set", "train.eval_every=1"]


@pytest.fixture(autouse=True)
def small_machine(monkeypatch):
    monkeypatch.setattr(limits, "available_bytes", lambda device: 16 * 1024 * 1024)


def invoke(*args):
    return CliRunner().invoke(cli_module.cli, [str(a) for a in args])


def check_promise(result, before, after, *, may_fail_with: str | None = None) -> None:
    """exit 0, or exit 2 with one line and nothing changed (or exit 1 with one line matching ``may_fail_with``)."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    if result.exit_code == 0:
        return
    assert len(lines) == 1 and lines[0].startswith("error: "), (result.exit_code, result.stderr)
    if result.exit_code == 1 and may_fail_with is not None:
        assert re.search(may_fail_with, lines[0]), lines[0]
        return
    assert result.exit_code == 2, (result.exit_code, lines)
    assert after == before


def fuzzed(args_for):
    """Run ``args_for(folder)`` in a fresh folder; return the result and the folder before and after."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        args = args_for(folder)
        before = snapshot(folder)
        result = invoke(*args)
        return result, before, snapshot(folder)


# ------------------------------------------------------------------ --set values

KEYS = st.sampled_from(
    [
        "task.p",
        "task.train_fraction",
        "task.n_train",
        "task.split_seed",
        "task.loss",
        "model.width",
        "model.init_scale",
        "model.parameterization",
        "optimizer.lr",
        "optimizer.beta1",
        "optimizer.name",
        "regularizer.strength",
        "regularizer.name",
        "train.batch_size",
        "train.memorize_threshold",
        "train.generalize_threshold",
        "train.dtype",
        "train.device",
        "train.early_stop",
        "seed",
        "metrics.l2_norm",
        "metrics.fourier",
        "metrics",
        "task",
        "model.name",
        "bogus.key",
        "",
    ]
) | st.from_regex(r"[a-z_.=]{1,15}", fullmatch=True)

JSONISH = st.sampled_from(
    [
        "1e400",
        "-1e400",
        "NaN",
        "Infinity",
        "null",
        "true",
        "[1,2]",
        "{}",
        '{"a":1}',
        '"4p"',
        "4p",
        "2*p^2",
        "2*p^(5/3)",
        "",
        "[]",
        "9" * 40,
        "-0",
        "0.0",
        "1e-400",
        "\u00e9",
        "cuda",
        "float16",
    ]
)
VALUES = st.one_of(
    JSONISH,
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(json.dumps),
    st.text(max_size=20),
)


@FUZZ
@given(key=KEYS, value=VALUES)
def test_fuzz_set_values(key, value):
    def args(folder):
        return [
            "run",
            "-t",
            "modadd-cls",
            "-m",
            "quadratic",
            *TINY,
            "--set",
            f"{key}={value}",
            "--set",
            "train.steps=1",
            "-q",
            "--store",
            folder / "s.db",
        ]

    check_promise(*fuzzed(args), may_fail_with=r"^error: run \w+ failed: ")


# ------------------------------------------------------------------ option strings

OPTION_TEXT = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "",
            " ",
            "cpu",
            "auto",
            "cuda",
            "mps",
            "0-3",
            "0,1",
            "-1",
            "3-1",
            "0-99999",
            "1,1",
            "9" * 30,
            "default",
            "paper",
            "nanda",
        ]
    ),
)
OPTIONS = st.sampled_from(
    ["--task", "--model", "--regularizer", "--optimizer", "--preset", "--device", "--seed", "--seeds"]
)


@FUZZ
@given(option=OPTIONS, value=OPTION_TEXT)
def test_fuzz_option_strings(option, value):
    def args(folder):
        base = {"--task": "modadd-cls", "--model": "quadratic"}
        base[option] = value
        flat = [x for pair in base.items() for x in pair]
        return ["run", *flat, *TINY, "--set", "train.steps=1", "--max-runs", "8", "-q", "--store", folder / "s.db"]

    check_promise(*fuzzed(args), may_fail_with=r"^error: run \w+ failed: ")


# ------------------------------------------------------------------ suite documents


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"


SCALARS = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.booleans(),
)
TOML_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
SUITE_KEYS = st.sampled_from(
    [
        "name",
        "regularizer",
        "optimizer",
        "preset",
        "seeds",
        "task",
        "model",
        "bogus",
        "set.task.p",
        "set.task.train_fraction",
        "set.model.width",
        "set.model.init_scale",
        "set.optimizer.lr",
        "set.regularizer.strength",
        "set.train.device",
        "set.train.dtype",
        "set.seed",
        "set.bogus",
        "grid.task.p",
        "grid.model.width",
        "grid.task.train_fraction",
        "grid.seed",
        "grid.optimizer.lr",
        "grid",
    ]
)


@FUZZ
@given(edits=st.lists(st.tuples(SUITE_KEYS, TOML_VALUES), min_size=1, max_size=3), in_suite=st.booleans())
def test_fuzz_suite_documents(edits, in_suite):
    lines = "".join(f"{'seeds' if in_suite and k == 'seeds' else k} = {toml_value(v)}\n" for k, v in edits)
    text = SUITE.replace('regularizer = "l2"\n', 'regularizer = "l2"\n' + lines)

    def args(folder):
        (folder / "suite.toml").write_text(text)
        return ["suite", "run", folder / "suite.toml", "--store", folder / "s.db", "--max-runs", "8", "--quiet"]

    check_promise(*fuzzed(args))


@FUZZ
@given(junk=st.text(max_size=40), at=st.integers(min_value=0, max_value=len(SUITE)))
def test_fuzz_suite_text(junk, at):
    text = SUITE[:at] + junk + SUITE[at:]

    def args(folder):
        (folder / "suite.toml").write_text(text)
        return ["suite", "run", folder / "suite.toml", "--store", folder / "s.db", "--max-runs", "8", "--quiet"]

    check_promise(*fuzzed(args))


# ------------------------------------------------------------------ baselines


@pytest.fixture(scope="module")
def store_with_runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz-store")
    (folder / "suite.toml").write_text(SUITE)
    assert invoke("suite", "run", folder / "suite.toml", "--store", folder / "s.db").exit_code == 0
    return folder / "s.db"


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
ENTRY_KEYS = ["task", "entry", "seeds", "generalized", "success_rate", "median_t_generalize", "final_test_acc"]


@st.composite
def baselines(draw):
    entry = {
        "task": "modadd-cls",
        "entry": "adamw",
        "seeds": 1,
        "generalized": 0,
        "success_rate": 0.0,
        "median_t_generalize": None,
        "final_test_acc": 0.1,
    }
    doc = {"format": 1, "suite": "hostile", "entries": [entry]}
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        where = draw(st.sampled_from(["top", "entry"]))
        target = doc if where == "top" else entry
        key = draw(
            st.sampled_from(["format", "suite", "entries", "extra"] if where == "top" else [*ENTRY_KEYS, "extra"])
        )
        if draw(st.booleans()):
            target.pop(key, None)
        else:
            target[key] = draw(JSON)
    return json.dumps(doc) if draw(st.booleans()) else json.dumps(draw(JSON))


@FUZZ
@given(text=baselines())
def test_fuzz_baselines(store_with_runs, text):
    before_store = store_with_runs.read_bytes()

    def args(folder):
        (folder / "baseline.json").write_text(text)
        return ["compare", "--baseline", folder / "baseline.json", "--store", store_with_runs]

    check_promise(*fuzzed(args), may_fail_with=r"regression\(s\) against")
    assert store_with_runs.read_bytes() == before_store


# ------------------------------------------------------------------ loggers and their folders

LOG_DIRS = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            ".",
            "..",
            "/dev/full",
            "/dev/null",
            "/proc/self",
            "/",
            "x" * 300,
            "/".join(["d" * 200] * 25),
            "FILE",
            "FILE/sub",
            "LINK",
            "LINK/sub",
            "logs",
            "a/b/c",
        ]
    ),
    st.text(max_size=20),
)
LOGGER_NAMES = st.one_of(
    st.sampled_from(["jsonl", "tensorboard", "", "JSONL", "jsonl ", "bogus"]), st.text(max_size=10)
)


@FUZZ
@given(log_dir=LOG_DIRS, logger=LOGGER_NAMES)
def test_fuzz_loggers_and_log_dirs(log_dir, logger):
    """Any --log-dir and --logger: a run, or one line and exit 2 with nothing written; never a write through the
    planted symlink (LINK) nor into the planted file (FILE)."""

    def args(folder):
        (folder / "FILE").write_text("precious")
        (folder / "victim").mkdir()
        (folder / "LINK").symlink_to(folder / "victim")
        where = log_dir if log_dir.startswith("/") or not log_dir.strip() else str(folder / log_dir)
        return [
            "run",
            "-t",
            "modadd-cls",
            "-m",
            "quadratic",
            *TINY,
            "--set",
            "train.steps=1",
            "-q",
            "--store",
            folder / "s.db",
            "--logger",
            logger,
            "--log-dir",
            where,
        ]

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        arguments = args(folder)
        before = snapshot(folder)
        result = invoke(*arguments)
        check_promise(result, before, snapshot(folder), may_fail_with=r"^error: run \w+ failed: ")
        assert (folder / "FILE").read_text() == "precious"


# ------------------------------------------------------------------ benchmark files

BENCH_KEYS = st.sampled_from(
    [
        "benchmark.name",
        "benchmark.version",
        "benchmark.seeds",
        "benchmark.reference",
        "benchmark.baselines",
        "benchmark.bogus",
        "defaults.model",
        "defaults.set.train.steps",
        "defaults.set.train.device",
        "defaults.set.model.width",
        "tracks.0.name",
        "tracks.0.task",
        "tracks.0.model",
        "tracks.0.seeds",
        "tracks.0.set.task.p",
        "tracks.0.set.train.device",
        "tracks.0.bogus",
        "tracks",
    ]
)


def _bench_doc():
    return {
        "benchmark": {"name": "fuzz", "version": 1, "seeds": [0], "reference": "adamw", "baselines": ["adamw"]},
        "defaults": {"model": "quadratic", "set": {"model": {"width": 4}, "train": {"steps": 1, "eval_every": 1}}},
        "tracks": [{"name": "cls", "task": "modadd-cls", "set": {"task": {"p": 5}}}],
    }


def _toml(doc) -> str:
    """A benchmark document as TOML (tables, then the array of tracks)."""
    lines = []
    for table in ("benchmark", "defaults"):
        if isinstance(doc.get(table), dict):
            lines.append(f"[{table}]")
            lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in doc[table].items()]
    for track in doc.get("tracks") if isinstance(doc.get("tracks"), list) else []:
        lines.append("[[tracks]]")
        if isinstance(track, dict):
            lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in track.items()]
    return "\n".join(lines) + "\n"


@FUZZ
@given(key=BENCH_KEYS, value=TOML_VALUES)
def test_fuzz_benchmark_files(key, value):
    """A benchmark file with one value changed anywhere: run (exit 0) or refused with one line, nothing written
    (no plan saved, no store created: the refusal comes before any write)."""
    doc = _bench_doc()
    node, *path = key.split(".")
    target = doc
    parts = [node, *path]
    for part in parts[:-1]:
        target = target[int(part)] if isinstance(target, list) else target.setdefault(part, {})
        if not isinstance(target, (dict, list)):
            break
    else:
        last = parts[-1]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value

    def args(folder):
        (folder / "b.toml").write_text(_toml(doc))
        return ["bench", "run", "-b", folder / "b.toml", "--store", folder / "s.db", "-q"]

    check_promise(*fuzzed(args), may_fail_with=r"run\(s\) were interrupted|failed")


# ------------------------------------------------------------------ checkpoint files


@pytest.fixture(scope="module")
def checkpointed(tmp_path_factory):
    """A store with one finished run and its checkpoint files (made once; each example works on a copy)."""
    folder = tmp_path_factory.mktemp("ckpt")
    store = folder / "s.db"
    result = invoke(
        "run", "-t", "modadd-cls", "-m", "quadratic", *TINY, "--set", "train.steps=20", "--store", store, "-q"
    )
    assert result.exit_code == 0, result.output
    files = sorted((folder / "s.db.checkpoints").rglob("*.safetensors"))
    assert files
    return folder, files[-1].relative_to(folder)


MUTATIONS = st.one_of(
    st.tuples(st.just("flip"), st.integers(min_value=0, max_value=10**6), st.integers(min_value=1, max_value=255)),
    st.tuples(st.just("truncate"), st.integers(min_value=0, max_value=10**6), st.just(0)),
    st.tuples(st.just("append"), st.binary(min_size=1, max_size=64), st.just(0)),
    st.tuples(
        st.just("header"),
        st.sampled_from(
            [
                "{}",
                "[]",
                '{"grokbench": "{}"}',
                '{"__metadata__": {"grokbench": "[]"}}',
                '{"__metadata__": {"grokbench": "{\\"run\\": 1}"}}',
                "null",
                '"x"',
                "{" * 50,
            ]
        ),
        st.just(0),
    ),
)


def _mutate(path: Path, how: str, where: object, value: int) -> bool:
    """Apply one mutation; False when it leaves the file as it was."""
    data = path.read_bytes()
    if how == "flip":
        i = int(where) % len(data)  # type: ignore[call-overload]
        new = data[:i] + bytes([data[i] ^ value]) + data[i + 1 :]
    elif how == "truncate":
        new = data[: int(where) % len(data)]  # type: ignore[call-overload]
    elif how == "append":
        new = data + bytes(where)  # type: ignore[call-overload]
    else:
        text = str(where).encode()
        new = len(text).to_bytes(8, "little") + text + data[8 + int.from_bytes(data[:8], "little") :]
    path.write_bytes(new)
    return new != data


@FUZZ
@given(mutation=MUTATIONS)
def test_fuzz_checkpoint_files(checkpointed, mutation):
    """A damaged checkpoint file: `store check` reports it (exit 1, one error line, no traceback) and `resume`
    refuses it (exit 2, one line) without changing the store; an intact file still checks."""
    import shutil

    source, relative = checkpointed
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        shutil.copy2(source / "s.db", folder / "s.db")
        shutil.copytree(source / "s.db.checkpoints", folder / "s.db.checkpoints")
        changed = _mutate(folder / relative, *mutation)
        checked = invoke("store", "check", "--store", folder / "s.db")
        assert (
            "Traceback" not in checked.output and checked.exception is None or isinstance(checked.exception, SystemExit)
        )
        if not changed:
            assert checked.exit_code == 0, checked.output
            return
        assert checked.exit_code == 1, checked.output
        assert len(checked.stderr.strip().splitlines()) == 1 and "failed" in checked.stderr
        run_id = relative.parts[1]
        before = snapshot(folder)
        resumed = invoke("resume", run_id, "--store", folder / "s.db", "--steps", "40", "-q")
        assert resumed.exit_code == 2, (mutation, resumed.output)
        check_promise(resumed, before, snapshot(folder))

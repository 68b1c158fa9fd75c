"""Blame: a plugin's bad return value, a benchmark file's mistakes and an override's typo, each one line naming
who is at fault and what was expected."""

from __future__ import annotations

import json
import sqlite3

from .test_contract_versions import grokbench, installed

BAD_REGULARIZER = """
import torch
from grokbench import hookimpl
from grokbench.contracts import Regularizer

class Forgetful(Regularizer):
    \"\"\"An L2 penalty whose hand-written gradient forgets to return.\"\"\"

    name = "forgetful"
    capabilities = frozenset({"penalty"})

    def penalty(self, params):
        return sum((p * p).sum() for p in params)

    def penalty_grads(self, params):
        [2 * p for p in params]

@hookimpl
def register_regularizers(register):
    register(Forgetful)
"""


def test_a_regularizer_returning_none_is_one_line_naming_it_its_plugin_and_what_was_expected(tmp_path):
    env = installed(tmp_path, "badreg", BAD_REGULARIZER)
    store = tmp_path / "s.db"
    done = grokbench("run", "-t", "modadd-cls", "-m", "quadratic", "-r", "forgetful", "-o", "adam", "--set", "task.p=11",
                     "--set", "model.width=8", "--set", "train.steps=20", "--store", str(store), env=env)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    expected = (
        "regularizer 'forgetful' from plugin badreg (badreg 1.0) violates the contract: penalty_grads returned None, "
        "expected a list of 2 tensor(s) shaped like the parameters: [22, 8], [8, 11]"
    )
    assert expected in done.stderr and done.stderr.count("\n") == 1
    with sqlite3.connect(store) as conn:
        ((status, message, plugins),) = conn.execute("SELECT status, message, plugins FROM runs").fetchall()
    assert status == "failed" and message == expected
    assert json.loads(plugins)["regularizer"]["plugin"] == "badreg"


METHOD_AND_BENCHMARK = """
from pathlib import Path

from grokbench import hookimpl
from grokbench.contracts import BenchmarkFile, Preset

@hookimpl
def register_presets(register):
    register(Preset("badmethod", None, None, "AdamW misspelled",
                    {"optimizer": {"name": "adamm", "lr": 1e-3}, "regularizer": {"name": "none"}}))

@hookimpl
def register_benchmarks(register):
    register(BenchmarkFile(str(Path(__file__).with_name("tiny.toml"))))
"""


def refused(done, line: str, store) -> None:
    """Bad input: exit 2, this one line on stderr, no traceback, no store written."""
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"error: {line}\n"
    assert not store.exists()


def test_benchmark_file_mistakes_are_blamed_on_the_track_or_the_method_with_did_you_mean(tmp_path):
    from .test_benchmark import TINY

    env = installed(tmp_path, "benchplug", METHOD_AND_BENCHMARK)
    (tmp_path / "site" / "tiny.toml").write_text(TINY)
    store = tmp_path / "b.db"
    # a second installed benchmark: --benchmark is required, and the line says how to choose
    done = grokbench("bench", "run", "--method", "adamw", "--store", str(store), env=env)
    refused(done, "3 benchmarks are installed (grokbench-v1, grokbench-v2, tiny-bench): name one with --benchmark NAME "
                  "(e.g. --benchmark grokbench-v1); 'grokbench list' describes them", store)
    # a method's mistake names the method and its plugin, not a track
    done = grokbench("bench", "run", "--benchmark", "tiny-bench", "--method", "badmethod", "--store", str(store), env=env)
    refused(done, "method 'badmethod' (a preset of plugin benchplug (benchplug 1.0)): unknown optimizer 'adamm' "
                  "(did you mean 'adam'?)", store)
    # a track's mistake names the track, not a method
    typo = tmp_path / "typo.toml"
    typo.write_text(TINY.replace("train_fraction = 0.7", "train_fracton = 0.7"))
    done = grokbench("bench", "run", "--benchmark", str(typo), "--method", "adamw", "--store", str(store))
    refused(done, f"{typo}: track 'cls': unknown key 'task.train_fracton' (did you mean 'task.train_fraction'?)", store)
    typo.write_text(TINY.replace('reference = "adamw"', 'refrence = "adamw"'))
    done = grokbench("bench", "run", "--benchmark", str(typo), "--method", "adamw", "--store", str(store))
    refused(done, f"{typo}: unknown key 'benchmark.refrence' (did you mean 'benchmark.reference'?)", store)


def test_an_override_s_typo_gets_did_you_mean(tmp_path):
    store = tmp_path / "s.db"
    done = grokbench("run", "-t", "modadd-cls", "-m", "quadratic", "--set", "train.step=500", "--store", str(store))
    refused(done, "unknown key 'train.step' (did you mean 'train.steps'?)", store)
    done = grokbench("run", "-t", "modadd-cls", "-m", "quadratic", "--set", "model.widht=5", "--store", str(store))
    refused(done, "unknown key 'model.widht' (did you mean 'model.width'?)", store)
    done = grokbench("run", "-t", "modadd-cls", "-m", "quadratic", "--set", "model.zzz=5", "--store", str(store))
    refused(done, "unknown key 'model.zzz'", store)

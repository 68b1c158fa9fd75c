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

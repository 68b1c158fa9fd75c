from __future__ import annotations

import pytest
import torch

from grokbench.plugin.manager import get_registry

#: a modadd-cls configuration that groks in about a second on one CPU core
TINY_CLS = {
    "task": {"p": 23, "train_fraction": 0.6},
    "model": {"width": 128},
    "optimizer": {"lr": 3e-3},
    "train": {"steps": 3000, "eval_every": 50},
}


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Every test runs in its own directory, with its own default store, on few threads."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GROKBENCH_STORE", raising=False)
    monkeypatch.delenv("GROKBENCH_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("GROKBENCH_NO_ENTRY_POINTS", raising=False)
    torch.set_num_threads(1)


@pytest.fixture
def registry():
    return get_registry()


@pytest.fixture
def store_path(tmp_path):
    return tmp_path / "results.db"

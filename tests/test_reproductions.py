"""The pieces the published-result reproductions need: the one-hot MSE loss, Nanda et al.'s progress measures
(restricted and excluded loss) on hand-checkable logit tables, and the suites in tasks/reproductions/."""

import json
import math
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from grokbench_plugins.metrics.progress_measures import addition_basis, progress_measures
from grokbench_plugins.tasks.losses import CLASSIFICATION_LOSSES, classification_loss

from grokbench.config.suites import load_suite

ROOT = Path(__file__).resolve().parents[1]


def test_mse_is_the_squared_distance_to_the_one_hot_label_summed_over_classes():
    out = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    y = torch.tensor([0, 2])
    # row 0: exactly its one-hot label, 0; row 1: 0.25 + 0.25 + 1 = 1.5; mean 0.75
    assert "mse" in CLASSIFICATION_LOSSES
    assert classification_loss("mse", out, y).item() == pytest.approx(0.75)


def test_mse_of_the_modadd_task_is_the_shared_loss_and_its_gradient(registry):
    task_cls = registry.entries["task"]["modadd-cls"].component
    task = task_cls(task_cls.Params(p=7, loss="mse"))
    out = torch.randn(5, 7, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 3, 6, 2, 2])
    assert task.loss(out, y).item() == pytest.approx(classification_loss("mse", out, y).item())
    loss, grad = task.loss_and_output_grad(out.clone(), y)
    leaf = out.clone().requires_grad_()
    classification_loss("mse", leaf, y).backward()
    assert loss.item() == pytest.approx(classification_loss("mse", out, y).item())
    assert torch.allclose(grad, leaf.grad)


def test_the_default_loss_stays_cross_entropy(registry):
    task_cls = registry.entries["task"]["modadd-cls"].component
    assert task_cls.Params().loss == "cross_entropy"
    out, y = torch.randn(4, 5), torch.tensor([0, 1, 2, 3])
    assert classification_loss("cross_entropy", out, y).item() == pytest.approx(
        torch.nn.functional.cross_entropy(out, y).item()
    )


def wave_logits(p: int, k: int, scale: float) -> torch.Tensor:
    """Logit table [p², p]: logit_z(a, b) = scale · cos(2πk(a + b − z)/p), a circuit of frequency k alone."""
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    s = (a + b).reshape(-1, 1).double()
    z = torch.arange(p).reshape(1, -1).double()
    return scale * torch.cos(2 * math.pi * k * (s - z) / p)


def test_the_addition_basis_is_orthonormal():
    basis = addition_basis(7)
    assert basis.shape == (49, 6)
    assert torch.allclose(basis.T @ basis, torch.eye(6, dtype=torch.float64), atol=1e-12)


def test_a_single_frequency_circuit_by_hand():
    p, scale = 5, 3.0
    logits = wave_logits(p, 1, scale)
    train = torch.arange(0, p * p, 2)
    # every input's logits are scale·cos(2πj/5), j = 0..4, with j = 0 the label's: the cross-entropy is
    # log Σ_j exp(scale·cos(2πj/5)) − scale, the same for every input
    by_hand = math.log(sum(math.exp(scale * math.cos(2 * math.pi * j / p)) for j in range(p))) - scale
    values, keys = progress_measures(logits, train, 1)
    assert keys == [1]
    assert values["restricted_loss"] == pytest.approx(by_hand, abs=1e-12)
    assert values["excluded_loss"] == pytest.approx(math.log(p), abs=1e-12)  # nothing left: uniform logits
    assert values["key_share"] == pytest.approx(1.0, abs=1e-12)
    # the other frequency named as key: nothing restricted (uniform, log p), everything excluded (by hand again)
    values, keys = progress_measures(logits, train, [2])
    assert keys == [2]
    assert values["restricted_loss"] == pytest.approx(math.log(p), abs=1e-12)
    assert values["excluded_loss"] == pytest.approx(by_hand, abs=1e-12)
    assert values["key_share"] == pytest.approx(0.0, abs=1e-12)


def test_the_strongest_frequencies_are_the_keys():
    p = 11
    logits = wave_logits(p, 3, 2.0) + wave_logits(p, 5, 1.0) + wave_logits(p, 1, 0.1)
    values, keys = progress_measures(logits, torch.arange(p * p), 2)
    assert keys == [3, 5]
    share = (4.0 + 1.0) / (4.0 + 1.0 + 0.01)  # each wave's variance is proportional to its amplitude squared
    assert values["key_share"] == pytest.approx(share, abs=1e-12)


def cli(*args, store):
    env = {**os.environ, "GROKBENCH_STORE": str(store)}
    return subprocess.run(
        [sys.executable, "-m", "grokbench", *args], capture_output=True, text=True, env=env, timeout=300
    )


TINY = ["--set", "task.p=23", "--set", "task.train_fraction=0.6", "--set", "model.width=128"]


def test_a_real_run_records_the_progress_measures(tmp_path):
    store = tmp_path / "runs.db"
    proc = cli(
        "run", "-t", "modadd-cls", "-m", "quadratic", *TINY, "--set", "optimizer.lr=3e-3",
        "--set", "train.steps=200", "--set", "train.eval_every=100", "--set", "metrics.progress_measures.keys=3",
        "--json", store=store,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    keys = [int(k) for k in summary["key_frequencies"].split()]
    assert len(keys) == 3 and all(1 <= k <= 11 for k in keys)
    with sqlite3.connect(store) as db:
        rows = db.execute(
            "select step, name, value from curves where name in ('restricted_loss', 'excluded_loss', 'key_share')"
        ).fetchall()
    assert {(step, name) for step, name, _ in rows} == {
        (s, n) for s in (0, 100, 200) for n in ("restricted_loss", "excluded_loss", "key_share")
    }
    assert all(math.isfinite(v) and v >= 0 for _, _, v in rows)
    assert all(0 <= v <= 1 for _, n, v in rows if n == "key_share")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["-t", "modarith-cls", "--set", "task.operation=sub", "--set", "metrics.progress_measures=true"],
            "metric 'progress_measures' is defined for a + b mod p (modadd-cls, or modarith-cls with operation add)",
        ),
        (
            ["-t", "modadd-cls", "--set", "task.p=23", "--set", "metrics.progress_measures.frequencies=[12]"],
            "metrics.progress_measures.frequencies: 12 is above (p − 1)/2 = 11",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2_with_nothing_written(tmp_path, args, message):
    store = tmp_path / "runs.db"
    proc = cli("run", *args, "-m", "quadratic", store=store)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {message}"
    assert not store.exists()


@pytest.mark.parametrize("path", sorted((ROOT / "tasks" / "reproductions").glob("*.toml")), ids=lambda p: p.stem)
def test_every_reproduction_suite_loads_and_states_its_reduction(registry, path):
    suite = load_suite(path, registry)
    assert len(suite.runs) >= 3
    assert {run.config.seed for run in suite.runs} == {0, 1, 2}
    head = path.read_text(encoding="utf-8").split("[suite]")[0]
    assert "Reduced" in head and "One command" in head

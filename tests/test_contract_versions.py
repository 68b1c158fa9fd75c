"""The versioned plugin contract: a plugin's declared range, deprecation notices, parameter-dependent capabilities."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch
from grokbench_plugins.models.mlp import ReluMLP

from grokbench import hookimpl
from grokbench.plugin.contracts import Model
from grokbench.plugin.manager import load_plugins
from grokbench.version import CONTRACT


def module(name: str, contract: object = None, models: tuple[type, ...] = ()) -> types.ModuleType:
    """A plugin module made on the fly: its ``grokbench_contract`` and a register_models hook."""
    mod = types.ModuleType(name)
    if contract is not None:
        mod.grokbench_contract = contract  # type: ignore[attr-defined]

    def register_models(register):
        for cls in models:
            register(cls)

    mod.register_models = hookimpl(register_models)  # type: ignore[attr-defined]
    return mod


def old_model(module_name: str) -> type:
    """A model written before capability 'token-weights' existed: it defines token_weights, declares nothing."""
    return type(
        "OldMLP",
        (ReluMLP,),
        {
            "__module__": module_name,
            "name": "old-mlp",
            "capabilities": ReluMLP.capabilities - {"token-weights"},
        },
    )


def test_the_contract_version_is_an_integer_recorded_in_the_changelog():
    assert isinstance(CONTRACT, int) and CONTRACT >= 4
    changelog = (Path(__file__).parents[1] / "CHANGELOG.md").read_text()
    assert f"plugin contract {CONTRACT}" in changelog


@pytest.mark.parametrize("declared", [f">={CONTRACT}", f"=={CONTRACT}", f">={CONTRACT - 1},<{CONTRACT + 1}", None])
def test_a_plugin_in_range_loads(declared):
    registry = load_plugins([("fits", module("fits", declared))], entry_points=False)
    (info,) = registry.plugins
    assert info.error is None


@pytest.mark.parametrize(
    "declared, said",
    [
        (f">={CONTRACT + 1}", f"supports plugin contract >={CONTRACT + 1}, but this grokbench"),
        (f"<{CONTRACT}", f"supports plugin contract <{CONTRACT}, but this grokbench"),
        ("four", "declares grokbench_contract = 'four', not a version specifier such as '>=4'"),
        (4, "declares grokbench_contract = 4, not a version specifier"),
    ],
)
def test_a_plugin_out_of_range_is_broken_with_one_line_naming_the_range(declared, said):
    cls = type("Later", (ReluMLP,), {"__module__": "later", "name": "later-mlp"})
    registry = load_plugins([("later", module("later", declared, (cls,)))], entry_points=False)
    (info,) = registry.plugins
    assert said in info.error and "\n" not in info.error
    if isinstance(declared, str) and declared != "four":
        assert f"has contract {CONTRACT}" in info.error
    assert "later-mlp" not in registry.names("model")


def test_a_model_defining_token_weights_undeclared_works_with_one_notice():
    with pytest.warns(DeprecationWarning, match="OldMLP defines token_weights without declaring capability 'token-weights'"):
        registry = load_plugins([("oldplug", module("oldplug", None, (old_model("oldplug"),)))], entry_points=False)
    (info,) = registry.plugins
    assert info.error is None
    assert info.notices == [
        "OldMLP defines token_weights without declaring capability 'token-weights': add it "
        f"(capabilities = frozenset({{..., 'token-weights'}})); plugin contract {CONTRACT + 1} will refuse it undeclared"
    ]
    assert registry.get("model", "old-mlp").supports("token-weights")
    # a model that defines only part of what a capability requires is still refused
    half = type("Half", (Model,), {"name": "half", "apply": lambda self, p, x: x, "homogeneity": 2})
    with pytest.raises(TypeError, match="Half defines homogeneity without declaring capability 'homogeneous'"):
        half.check_class()


def test_capabilities_may_depend_on_parameters(registry):
    from grokbench.plugin.contracts import DataSpec

    kernel = registry.get("model", "kernel")
    assert kernel.supports("homogeneous")  # the class may be
    spec = DataSpec(vocab_size=5, positions=2, output_dim=5)

    def build(**raw):
        return kernel(registry.params(kernel, {"width": 8, **raw}), spec, generator=torch.Generator().manual_seed(0))

    assert not build().supports("homogeneous")  # f₀ ≠ 0: not homogeneous
    plain = build(init_output=False)
    assert plain.supports("homogeneous") and plain.homogeneity == 1
    assert registry.get("model", "ntk-inf")(
        registry.params(registry.get("model", "ntk-inf"), {"width": 8}), spec, generator=torch.Generator()
    ).supports("homogeneous")

    class Wider(ReluMLP):
        name = "wider"

        @classmethod
        def capabilities_for(cls, params):
            return cls.capabilities | {"homogeneous"}

    with pytest.raises(TypeError, match="Wider.capabilities_for returned .* not a frozenset within its capabilities"):
        Wider(Wider.Params(), spec, generator=torch.Generator())


def test_a_kernel_model_is_homogeneous_for_margin_only_without_its_initial_output(tmp_path):
    base = ["-t", "modadd-cls", "-m", "kernel", "--set", "task.p=11", "--set", "model.width=32"]
    base += ["--set", "train.steps=100", "--set", "metrics.margin=true", "--store", str(tmp_path / "k.db")]
    refused = grokbench(*base)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "metric 'margin' needs a homogeneous model" in refused.stderr
    assert not (tmp_path / "k.db").exists()
    done = grokbench(*base, "--set", "model.init_output=false", "--json")
    assert done.returncode == 0, done.stderr


def grokbench(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "grokbench", *args]
    if args and args[0] == "-t":
        cmd = [sys.executable, "-m", "grokbench", "run", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def installed(tmp_path: Path, name: str, source: str) -> dict[str, str]:
    """An environment in which a plugin distribution ``name`` 1.0 is installed (a module and its dist-info)."""
    site = tmp_path / "site"
    (site / f"{name}-1.0.dist-info").mkdir(parents=True)
    (site / f"{name}.py").write_text(textwrap.dedent(source))
    (site / f"{name}-1.0.dist-info" / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (site / f"{name}-1.0.dist-info" / "entry_points.txt").write_text(f"[grokbench]\n{name} = {name}\n")
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(site) + (os.pathsep + path if path else "")}


def test_the_cli_lists_a_plugin_for_a_later_contract_as_broken_and_run_refuses_it(tmp_path):
    env = installed(
        tmp_path,
        "laterplug",
        f"""
        from grokbench import hookimpl
        from grokbench_plugins.models.mlp import ReluMLP

        grokbench_contract = ">={CONTRACT + 1}"

        class LaterMLP(ReluMLP):
            name = "later-mlp"

        @hookimpl
        def register_models(register):
            register(LaterMLP)
        """,
    )
    listed = grokbench("list", env=env)
    assert "Broken plugins" in listed.stdout
    line = next(line for line in listed.stdout.splitlines() if "laterplug" in line)
    assert f"supports plugin contract >={CONTRACT + 1}" in line and f"has contract {CONTRACT}" in line
    shown = grokbench("plugins", env=env)
    assert "BROKEN: supports plugin contract" in next(li for li in shown.stdout.splitlines() if "laterplug" in li)
    store = tmp_path / "s.db"
    refused = grokbench("run", "-t", "modadd-cls", "-m", "later-mlp", "--store", str(store), env=env)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    assert "plugin 'laterplug' supports plugin contract" in refused.stderr and f"has contract {CONTRACT}" in refused.stderr
    assert not store.exists()


def test_the_cli_shows_a_deprecation_notice_once_and_the_old_plugin_works(tmp_path):
    env = installed(
        tmp_path,
        "oldplug",
        """
        from grokbench import hookimpl
        from grokbench_plugins.models.mlp import ReluMLP

        class OldMLP(ReluMLP):
            name = "old-mlp"
            capabilities = frozenset({"ntk", "ntk-limit"})  # token_weights is ReluMLP's

        @hookimpl
        def register_models(register):
            register(OldMLP)
        """,
    )
    listed = grokbench("plugins", env=env)
    assert listed.returncode == 0
    line = next(line for line in listed.stdout.splitlines() if "oldplug" in line)
    assert "BROKEN" not in line and "old-mlp" in line
    notices = [line for line in listed.stderr.splitlines() if "notice" in line]
    assert notices == [
        "grokbench: notice: plugin oldplug (oldplug 1.0): OldMLP defines token_weights without declaring capability "
        f"'token-weights': add it (capabilities = frozenset({{..., 'token-weights'}})); plugin contract {CONTRACT + 1} "
        "will refuse it undeclared"
    ]
    # the workers a command starts inherit that the notices were shown
    quiet = grokbench("plugins", env={**env, "GROKBENCH_NOTICES_SHOWN": "1"})
    assert quiet.returncode == 0 and "notice" not in quiet.stderr


def test_a_metric_s_summary_keys_reach_the_csv_without_report_columns_and_a_notice_says_how_to_show_them(tmp_path):
    env = installed(
        tmp_path,
        "ratioplug",
        """
        import torch
        from grokbench import hookimpl
        from grokbench.contracts import Metric

        class NormRatio(Metric):
            \"\"\"‖θ‖∞ / ‖θ‖₂ over all parameters.\"\"\"

            name = "norm_ratio"
            outputs = ("norm_ratio",)
            summary_keys = ("norm_ratio_final",)

            def compute(self, ctx):
                theta = torch.cat([p.detach().double().reshape(-1) for p in ctx.model.parameters().values()])
                return {"norm_ratio": (theta.abs().max() / theta.norm()).item()}

            def summarize(self, curves, summary):
                return {"norm_ratio_final": float(curves[-1]["norm_ratio"]) if curves else None}

        @hookimpl
        def register_metrics(register):
            register(NormRatio)
        """,
    )
    finals = []
    for seed in ("0", "1"):
        done = grokbench(
            "run", "-t", "modadd-cls", "-m", "quadratic", "--seed", seed, "--set", "task.p=11", "--set", "train.steps=40",
            "--set", "metrics.norm_ratio=true", "--store", str(tmp_path / "s.db"), "--json", env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        finals.append(__import__("json").loads(done.stdout)["norm_ratio_final"])
    report = grokbench("report", "--store", str(tmp_path / "s.db"), "--out", str(tmp_path / "rep"), "--no-plots", env=env)
    assert report.returncode == 0, report.stderr
    notices = [line for line in report.stderr.splitlines() if "notice" in line]
    assert notices == [
        "grokbench: notice: plugin ratioplug (ratioplug 1.0): metric 'norm_ratio' declares summary_keys "
        "(norm_ratio_final) but no report_columns: they reach leaderboard.csv only; to show them in the tables, "
        "declare report_columns = (SummaryColumn('norm_ratio_final', 'a label', 'max' or 'min' or None),)"
    ]
    import csv

    with open(tmp_path / "rep" / "leaderboard.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["norm_ratio_final"]) == pytest.approx(sum(finals) / 2)
    assert "norm_ratio_final" not in (tmp_path / "rep" / "leaderboard.md").read_text()

"""``grokbench new-plugin NAME``: write an installable plugin package skeleton that passes its own test.

The package holds ``pyproject.toml`` (with the ``grokbench`` entry point), one
module registering an example model, a ``conftest.py`` that hands the plugin
object to grokbench's pytest fixtures (:mod:`grokbench.authoring.testing`), a test, and a
README saying what to do next.
"""

from __future__ import annotations

import re
from pathlib import Path

from grokbench.errors import ConfigError
from grokbench.version import __version__

NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_][A-Za-z0-9]+)*")

PYPROJECT = """\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"
description = "A grokbench plugin."
requires-python = ">=3.10"
dependencies = ["grokbench>={grokbench_version}"]

[project.optional-dependencies]
test = ["pytest>=7.4"]

# grokbench finds plugins through this entry-point group: name = "module".
[project.entry-points.grokbench]
{module} = "{module}.plugin"

[tool.setuptools]
packages = ["{module}"]

[tool.pytest.ini_options]
testpaths = ["tests"]
"""

PLUGIN = '''\
"""{dist}: a grokbench plugin. Registers the model ``{model}``.

See grokbench's docs/plugins.md for every hook and contract.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field, PositiveFloat, PositiveInt

from grokbench import hookimpl
from grokbench.plugin.contracts import Model, Params


class EmbeddingMLP(Model):
    """Sum of per-position token embeddings, one ReLU hidden layer, linear readout."""

    name = "{model}"

    class Params(Params):  # unknown keys are rejected; `grokbench list` shows these
        width: PositiveInt = Field(128, description="hidden width")
        init_scale: PositiveFloat = Field(1.0, description="multiplies every initial weight")

    def __init__(self, params, spec, *, generator, device="cpu", dtype=torch.float32):
        super().__init__(params, spec, generator=generator, device=device, dtype=dtype)
        h, s = self.params.width, self.params.init_scale

        def normal(*shape, fan):
            t = torch.randn(*shape, generator=generator) * (s / math.sqrt(fan))
            return t.to(device=self.device, dtype=dtype)

        # spec.positions tokens per example, each in [0, spec.vocab_size); output [n, spec.output_dim]
        self.params_ = {{
            "embed": normal(spec.positions, spec.vocab_size, h, fan=spec.positions),
            "readout": normal(h, spec.output_dim, fan=h),
        }}

    def apply(self, params, x):
        hidden = sum(params["embed"][j][x[:, j]] for j in range(x.shape[1]))
        return torch.relu(hidden) @ params["readout"]

    # loss_and_grads: the default (autograd through apply) is used.


@hookimpl
def register_models(register):
    register(EmbeddingMLP)
'''

CONFTEST = """\
import pytest

import {module}.plugin


@pytest.fixture
def grokbench_extra_plugins():
    # test the code in this checkout, under its entry-point name (it replaces an installed copy)
    return [("{module}", {module}.plugin)]
"""

TEST = """\
import importlib.metadata

from grokbench.plugin.manager import load_plugins
from grokbench.authoring.testing import check_model_contract

import {module}.plugin


def test_model_satisfies_the_contract():
    model = check_model_contract({module}.plugin.EmbeddingMLP, {{"width": 32}})
    assert model.parameters()["embed"].shape == (2, 7, 32)


def test_model_memorizes_the_tiny_task(grokbench_run):
    result = grokbench_run(
        model="{model}",
        steps=150,
        overrides={{"model": {{"width": 64}}, "optimizer": {{"name": "adam", "lr": 0.01}}}},
    )
    assert result.status == "completed", result.message
    assert result.summary["final_train_acc"] == 1.0


def test_entry_point_is_installed():
    eps = [ep for ep in importlib.metadata.entry_points(group="grokbench") if ep.name == "{module}"]
    assert eps, "not installed: run `pip install -e .` in this package first"
    registry = load_plugins()
    entry = registry.entry("model", "{model}")
    assert (entry.plugin.name, entry.plugin.distribution) == ("{module}", "{dist}")
"""

README = """\
# {dist}

A [grokbench](https://pypi.org/project/grokbench/) plugin registering the model `{model}`.

```bash
pip install -e .                      # registers the entry point
grokbench plugins                     # {module} ({dist} 0.1.0): model: {model}
grokbench run --task modadd-cls --model {model} --set task.p=23
python -m pytest                      # grokbench's fixtures (grokbench.authoring.testing) are loaded automatically
```
"""


def write_plugin(name: str, directory: str | Path | None = None) -> Path:
    """Write the skeleton of plugin ``name`` into ``directory`` (default ``./name``); return the directory."""
    if not NAME_RE.fullmatch(name):
        raise ConfigError(f"invalid plugin name '{name}': use letters, digits, '-' and '_', starting with a letter")
    root = Path(directory if directory is not None else name)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ConfigError(f"'{root}' exists and is not an empty directory")
    dist = name.lower().replace("_", "-")
    module = dist.replace("-", "_")
    fields = {"dist": dist, "module": module, "model": f"{dist}-mlp", "grokbench_version": __version__}
    files = {
        "pyproject.toml": PYPROJECT,
        f"{module}/__init__.py": '"""{dist}: a grokbench plugin."""\n',
        f"{module}/plugin.py": PLUGIN,
        "tests/conftest.py": CONFTEST,
        "tests/test_plugin.py": TEST,
        "README.md": README,
    }
    for rel, template in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.format(**fields))
    return root

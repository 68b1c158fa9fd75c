"""Side-by-side step cost (grokbench.training.costs): ratios of CPU seconds per step, measured in one process."""

import pytest
import torch

from grokbench.config.run import resolve_config
from grokbench.errors import ConfigError
from grokbench.plugin.manager import get_registry
from grokbench.training.costs import measure_step_cost


def config(width, **names):
    tree = {"task": {"p": 23, "train_fraction": 0.6}, "model": {"width": width}}
    return resolve_config(get_registry(), task="modadd-cls", model="quadratic", overrides=tree, **names)


def test_a_config_against_itself_measures_even_and_a_wider_model_clearly_more():
    """The quadratic network's step is two matrix products of the width: twice the width, about twice the work."""
    torch.set_num_threads(2)
    same, again, wide = measure_step_cost([config(512), config(512), config(1024)], get_registry())
    assert 0.8 <= again / same <= 1.25
    assert 1.5 <= wide / same <= 2.6
    assert 1e-5 < same < 0.1  # seconds per step
    assert torch.get_num_threads() == 2  # pinned to one thread while measuring, then restored


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="at least one configuration"):
        measure_step_cost([], get_registry())
    with pytest.raises(ValueError, match="at least 1"):
        measure_step_cost([config(8)], get_registry(), steps=0)
    kernel = resolve_config(get_registry(), task="modadd-cls", model="kernel", overrides={"task": {"p": 11}})
    with pytest.raises(ConfigError, match="closed form"):
        measure_step_cost([kernel], get_registry(), steps=1, repeats=1)

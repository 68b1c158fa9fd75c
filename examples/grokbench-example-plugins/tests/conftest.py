import pytest

import grokbench_example_plugins.signsgd
import grokbench_example_plugins.mlp
import grokbench_example_plugins.tasks


@pytest.fixture
def grokbench_extra_plugins():
    # the code of this checkout, under the entry-point names (replacing an installed copy)
    return [
        ("example_tasks", grokbench_example_plugins.tasks),
        ("example_mlp", grokbench_example_plugins.mlp),
        ("example_signsgd", grokbench_example_plugins.signsgd),
    ]

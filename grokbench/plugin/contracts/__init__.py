"""The classes plugins subclass, one module per kind.

Every component is a class with a unique ``name`` (per kind), a ``Params`` pydantic model (unknown keys are
rejected) and a docstring whose first line is its description. grokbench instantiates components itself, with
validated parameters.
"""

from grokbench.plugin.contracts.base import (
    BATCHABLE,
    Capability,
    Capable,
    Component,
    ContractDeprecationWarning,
    Params,
    batchable_fields,
    per_member,
)
from grokbench.plugin.contracts.benchmark import BenchmarkFile
from grokbench.plugin.contracts.executor import Executor, GroupInterrupted
from grokbench.plugin.contracts.logger import Logger
from grokbench.plugin.contracts.metric import CurvePanel, EvalContext, Metric, SummaryColumn
from grokbench.plugin.contracts.model import BatchedModel, Model
from grokbench.plugin.contracts.optimizer import Optimizer, OptimizerState, TorchOptimizerState
from grokbench.plugin.contracts.preset import Preset
from grokbench.plugin.contracts.regularizer import Regularizer
from grokbench.plugin.contracts.search import Choice, LogUniform, SearchSpace, Uniform
from grokbench.plugin.contracts.task import ClassificationTask, DataSpec, Predict, Task, TaskData

#: in the reference's order (docs/plugins.md): module by module
__all__ = [
    "Params",
    "BATCHABLE",
    "batchable_fields",
    "per_member",
    "Capability",
    "Capable",
    "Component",
    "ContractDeprecationWarning",
    "DataSpec",
    "TaskData",
    "Predict",
    "Task",
    "ClassificationTask",
    "Model",
    "BatchedModel",
    "Regularizer",
    "Optimizer",
    "OptimizerState",
    "TorchOptimizerState",
    "EvalContext",
    "SummaryColumn",
    "CurvePanel",
    "Metric",
    "Executor",
    "GroupInterrupted",
    "Preset",
    "SearchSpace",
    "LogUniform",
    "Uniform",
    "Choice",
    "Logger",
    "BenchmarkFile",
]

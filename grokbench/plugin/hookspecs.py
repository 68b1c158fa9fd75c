"""Hook specifications: the whole contract between grokbench and its plugins (these docstrings are its reference).

A plugin is a module (or any object) with functions decorated by ``grokbench.hookimpl`` whose names match the
specs below, found through the ``grokbench`` entry-point group::

    [project.entry-points.grokbench]
    my_plugin = "my_package.plugin_module"

Every registration hook receives a ``register`` callback: call it once per component; grokbench records which
plugin (distribution and version) registered it. The classes to subclass are in :mod:`grokbench.plugin.contracts`.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

hookspec = pluggy.HookspecMarker("grokbench")


@hookspec
def register_tasks(register: Callable[[type], None]) -> None:
    """Register task classes (subclasses of :class:`grokbench.plugin.contracts.Task`).

    A task makes the data of a run (training and held-out examples as integer
    token indices), defines the training loss and evaluates a model's
    predictions. Call ``register(TaskClass)`` once per task.
    """


@hookspec
def register_models(register: Callable[[type], None]) -> None:
    """Register model classes (subclasses of :class:`grokbench.plugin.contracts.Model`).

    A model owns its parameters, maps integer token indices to outputs and
    returns the loss and its gradients for a batch. Call
    ``register(ModelClass)`` once per model.
    """


@hookspec
def register_regularizers(register: Callable[[type], None]) -> None:
    """Register regularizer classes (subclasses of :class:`grokbench.plugin.contracts.Regularizer`).

    A regularizer adds a penalty (and its (sub)gradient) to the loss, applies a
    decoupled update before each optimizer step, or both. Call
    ``register(RegularizerClass)`` once per regularizer.
    """


@hookspec
def register_optimizers(register: Callable[[type], None]) -> None:
    """Register optimizer classes (subclasses of :class:`grokbench.plugin.contracts.Optimizer`).

    An optimizer turns gradients into in-place parameter updates. Call
    ``register(OptimizerClass)`` once per optimizer.
    """


@hookspec
def register_metrics(register: Callable[[type], None]) -> None:
    """Register metric classes (subclasses of :class:`grokbench.plugin.contracts.Metric`).

    A metric is computed at every evaluation step and recorded as one or more
    curves; metrics whose class sets ``default = True`` run unless the run's
    configuration says otherwise. Call ``register(MetricClass)`` once per metric.
    """


@hookspec
def register_presets(register: Callable[[object], None]) -> None:
    """Register presets (instances of :class:`grokbench.plugin.contracts.Preset`).

    A preset is a named set of configuration values for a task and model pair.
    The preset named ``default`` of a pair is applied when a run names no
    preset. Call ``register(Preset(...))`` once per preset.
    """


@hookspec
def register_executors(register: Callable[[type], None]) -> None:
    """Register executor classes (subclasses of :class:`grokbench.plugin.contracts.Executor`).

    An executor decides where the runs of a suite train: the driver's process, a process pool, a Ray
    cluster, a batch scheduler. The driver (``grokbench suite run``) hands it groups of run configurations
    (runs a model may train as one batch) and a picklable work function; the executor calls the work
    function on each group somewhere and yields the results back. It never writes to the results store:
    each run records itself as it trains, or, with capability ``remote``, the driver stores it when it
    comes back. Call ``register(ExecutorClass)`` once per executor.
    """


@hookspec
def register_benchmarks(register: Callable[[object], None]) -> None:
    """Register benchmark protocols (instances of :class:`grokbench.plugin.contracts.BenchmarkFile`).

    A benchmark is a TOML file of tracks and baseline methods (docs/benchmark.md) that a plugin ships as package
    data; ``grokbench bench run --benchmark NAME`` finds it by its ``[benchmark].name``, and a command that
    names none uses the only one installed. Call ``register(BenchmarkFile(path))`` once per file.
    """


@hookspec
def register_loggers(register: Callable[[type], None]) -> None:
    """Register logger classes (subclasses of :class:`grokbench.plugin.contracts.Logger`).

    A logger receives a run's events (start with the resolved configuration,
    each evaluation, each checkpoint, the end) and sends them to a tracker; it
    is selected with ``grokbench run --logger NAME``. Call
    ``register(LoggerClass)`` once per logger.
    """

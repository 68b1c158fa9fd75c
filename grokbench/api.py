"""The Python API: train runs and seeds, resume a run, load a checkpoint's model.

Each call works in one :class:`Session` (the plugins' registry, the store, the loggers), built once at the
call's start and passed down explicitly; nothing below this layer loads plugins or picks a store itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grokbench.config.run import RunConfig, parse_assignments, resolve_config
from grokbench.plugin import manager
from grokbench.plugin.registry import Registry
from grokbench.recording.checkpoints import load, read
from grokbench.recording.interrupts import sigterm_interrupts
from grokbench.recording.live import Lifecycle, lifecycles
from grokbench.recording.recovery import open_store
from grokbench.recording.resume import resume_point
from grokbench.storage.store import Store
from grokbench.training.building import prepare
from grokbench.training.programs import train_config, train_group
from grokbench.training.resources import check_runnable
from grokbench.training.results import RunResult
from grokbench.training.state import check_matches

StoreArg = str | os.PathLike[str] | Store | None | bool


@dataclass
class Session:
    """What one command or API call works with: the registry of plugins, the store (None: nothing is saved)
    and the loggers each run gets."""

    registry: Registry
    store: Store | None = None
    loggers: Sequence[str] = ()
    log_dir: str | os.PathLike[str] | None = None

    @classmethod
    def open(
        cls,
        *,
        registry: Registry | None = None,
        store: StoreArg = False,
        loggers: Sequence[str] = (),
        log_dir: str | os.PathLike[str] | None = None,
        create: bool = True,
    ) -> Session:
        """``registry`` None: the installed plugins. ``store``: a path or :class:`Store`, ``True`` or ``None`` for
        the default store, ``False`` for none (runs whose processes died are marked ``interrupted`` on opening)."""
        registry = registry if registry is not None else manager.get_registry()
        if store is False:
            opened = None
        elif isinstance(store, Store):
            opened = store
        else:
            opened = open_store(None if store is True else store, create=create)
        return cls(registry, opened, tuple(loggers), log_dir)

    def lifecycles(self, count: int, **options: Any) -> list[Lifecycle]:
        """One recorder per run (its own logger instances); ``options``: :class:`Lifecycle`'s."""
        return lifecycles(count, self.store, self.registry, self.loggers, self.log_dir, **options)

    def resolve(self, task: str, model: str, overrides: Any = None, **options: Any) -> RunConfig:
        """``overrides``: a nested dict or ``"dotted.key=value"`` strings; ``options``: :func:`resolve_config`'s."""
        if overrides is not None and not isinstance(overrides, Mapping):
            overrides = parse_assignments(list(overrides))
        return resolve_config(self.registry, task=task, model=model, overrides=overrides, **options)

    def execute(
        self, cfg: RunConfig, *, progress: bool = False, on_eval: Callable[[dict[str, float]], None] | None = None
    ) -> RunResult:
        """Train a resolved configuration (checked with :func:`check_runnable`), recorded as it trains."""
        (lifecycle,) = self.lifecycles(1)
        with sigterm_interrupts():
            return train_config(cfg, registry=self.registry, progress=progress, on_eval=on_eval, lifecycle=lifecycle)

    def execute_seeds(
        self, cfgs: Sequence[RunConfig], *, progress: bool = False, notice: Callable[[str], None] | None = None
    ) -> list[RunResult]:
        """Train several checked configurations as one group (batched where the model allows), each recorded as
        its own run."""
        group = self.lifecycles(len(cfgs))
        with sigterm_interrupts():
            return train_group(cfgs, registry=self.registry, progress=progress, notice=notice, lifecycles=group)


def execute(
    cfg: RunConfig,
    *,
    registry: Registry | None = None,
    store: StoreArg = None,
    progress: bool = False,
    on_eval: Callable[[dict[str, float]], None] | None = None,
    loggers: Sequence[str] = (),
    log_dir: str | os.PathLike[str] | None = None,
) -> RunResult:
    """Train a resolved configuration and save it (``store=False`` saves nothing); its device and memory, the
    store and the loggers are checked before training."""
    registry = registry if registry is not None else manager.get_registry()
    check_runnable([cfg], registry)
    session = Session.open(registry=registry, store=store, loggers=loggers, log_dir=log_dir)
    return session.execute(cfg, progress=progress, on_eval=on_eval)


def run(
    task: str,
    model: str,
    *,
    regularizer: str | None = None,
    optimizer: str | None = None,
    preset: str | None = None,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
    seed: int | None = None,
    device: str | None = None,
    store: StoreArg = False,
    registry: Registry | None = None,
    progress: bool = False,
    on_eval: Callable[[dict[str, float]], None] | None = None,
    loggers: Sequence[str] = (),
    log_dir: str | os.PathLike[str] | None = None,
) -> RunResult:
    """Configure and train one run; the Python equivalent of ``grokbench run``.

    ``overrides`` is a nested dict or a list of ``"dotted.key=value"`` strings. ``store`` is a path, a
    :class:`Store`, ``True`` for the default store, or ``False`` (the default here) to save nothing.
    """
    resolver = Session.open(registry=registry)
    cfg = resolver.resolve(
        task, model, overrides, regularizer=regularizer, optimizer=optimizer, preset=preset, seed=seed, device=device
    )
    return execute(
        cfg,
        registry=resolver.registry,
        store=store,
        progress=progress,
        on_eval=on_eval,
        loggers=loggers,
        log_dir=log_dir,
    )


def run_seeds(
    task: str,
    model: str,
    seeds: Sequence[int],
    *,
    store: StoreArg = False,
    registry: Registry | None = None,
    progress: bool = False,
    notice: Callable[[str], None] | None = None,
    loggers: Sequence[str] = (),
    log_dir: str | os.PathLike[str] | None = None,
    **options: Any,
) -> list[RunResult]:
    """:func:`run` for several seeds of one configuration, trained as one group (batched when the model
    supports it), each recorded as its own run. ``options`` are :func:`run`'s (regularizer, optimizer, preset,
    overrides, device)."""
    resolver = Session.open(registry=registry)
    overrides = options.pop("overrides", None)
    cfgs = [resolver.resolve(task, model, overrides, seed=s, **options) for s in seeds]
    check_runnable(cfgs, resolver.registry)
    session = Session.open(registry=resolver.registry, store=store, loggers=loggers, log_dir=log_dir)
    return session.execute_seeds(cfgs, progress=progress, notice=notice)


def resume_run(
    run_id: str,
    *,
    store: Store,
    steps: int | None = None,
    registry: Registry | None = None,
    progress: bool = False,
    loggers: Sequence[str] = (),
    log_dir: str | os.PathLike[str] | None = None,
) -> RunResult:
    """Continue a stored run from its last checkpoint up to ``steps`` (default: its configured steps), in place:
    same run id, its curves from the checkpoint's step on trained again, its config's ``train.steps`` updated."""
    session = Session.open(registry=registry, store=store, loggers=loggers, log_dir=log_dir)
    assert session.store is not None
    cfg, point = resume_point(session.store, run_id, session.registry, steps)
    (lifecycle,) = session.lifecycles(1, resume=point)
    with sigterm_interrupts():
        return train_config(cfg, registry=session.registry, progress=progress, lifecycle=lifecycle)


def load_checkpoint(
    run_or_path: str | os.PathLike[str],
    *,
    store: str | os.PathLike[str] | Store | None = None,
    step: int | None = None,
    registry: Registry | None = None,
) -> Any:
    """The model plugin of a run, built from the run's configuration, with a checkpoint's parameters loaded.

    ``run_or_path`` is a checkpoint file (``.safetensors``) or a run id (prefix) in ``store`` (default
    store when None); ``step`` picks a checkpoint of that run (default: its last). Either is verified against its
    digest; a run's is read from the store's own folder and checked to be that run's (see
    :func:`grokbench.recording.checkpoints.load`).
    """
    import torch

    path = Path(run_or_path)
    from_file = path.suffix == ".safetensors" or path.is_file()
    session = Session.open(registry=registry, store=False if from_file else store, create=False)
    if from_file:
        state, header = read(path)
    else:
        assert session.store is not None
        run = session.store.get_run(str(run_or_path))
        _, state, header, _ = load(session.store, run, step)
    cfg = RunConfig.model_validate(header["config"])
    prep = prepare(cfg, session.registry)
    check_matches(state, prep.model, f"checkpoint of run {header.get('run_id')} at step {state.step}")
    with torch.no_grad():
        for name, tensor in prep.model.parameters().items():
            tensor.copy_(state.params[name])
    return prep.model

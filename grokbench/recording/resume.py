"""Where a stored run goes on from: its configuration, its last checkpoint checked against its model, and the
curves before it."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from grokbench.errors import ConfigError
from grokbench.recording import checkpoints as ckpt
from grokbench.training.state import ResumePoint, check_matches, missing_metric_states

if TYPE_CHECKING:
    from grokbench.plugin.registry import Registry
    from grokbench.storage.store import Store


def resume_point(
    store: Store,
    run_id: str,
    registry: Registry,
    steps: int | None,
    suite: str | None = None,
    notice: Callable[[str], None] | None = None,
) -> tuple[Any, ResumePoint]:
    """The configuration to train (``train.steps`` = ``steps`` or the run's own) and where to go on from.
    ``suite``: the suite resuming the run (a run of a suite is resumed by that suite only, to its own steps).
    ``notice`` (default: a line on stderr) is told when the checkpoint has no digest to verify.

    ConfigError, with the store untouched, for a run that is still running, has no checkpoint, whose plugins are
    gone, whose checkpoint is damaged, belongs to another run or configuration or does not match its model, or
    that is already at ``steps``."""
    from grokbench.config.run import RunConfig

    run = store.get_run(run_id)
    if run["status"] == "running":
        raise ConfigError(f"run {run['id']} is still running (pid {run.get('pid')} on {run.get('host')})")
    if run["suite"] != suite:
        raise ConfigError(
            f"run {run['id']} belongs to suite '{run['suite']}'; suites are resumed with 'grokbench suite run'"
        )
    cfg = RunConfig.model_validate(run["config"])
    for kind in ("task", "model", "regularizer", "optimizer"):
        name = getattr(cfg, kind).name
        if name not in registry.entries[kind]:
            registry.entry(kind, name)  # the unknown-name error, naming what is installed
    for name in cfg.metrics:
        registry.entry("metric", name)
    chosen, state, header, _ = ckpt.load(store, run, notice=notice or _to_stderr, identity=False)
    from grokbench.training.building import prepare

    prep = prepare(cfg, registry)
    check_matches(state, prep.model, f"checkpoint {chosen['path']}")
    ckpt.verify(header, run, chosen["step"], str(chosen["path"]))
    missing = missing_metric_states(state, prep.metrics)
    if missing:
        raise ConfigError(
            f"checkpoint {chosen['path']} holds no state of metric '{missing[0]}', which keeps one: "
            f"a resumed run would not record the curves it would have recorded"
        )
    target = steps if steps is not None else cfg.train.steps
    if target <= state.step:
        raise ConfigError(
            f"run {run['id']}'s last checkpoint is at step {state.step}; pass --steps N with N > {state.step}"
        )
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"steps": target})})
    curves = [r for r in store.curves(run["id"]).to_dict("records") if r["step"] < state.step]
    for r in curves:
        r["step"] = int(r["step"])
    return cfg, ResumePoint(run=run, state=state, curves=curves)


def _to_stderr(line: str) -> None:
    print(f"notice: {line}", file=sys.stderr)

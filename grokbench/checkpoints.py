"""Checkpoints: a run's training state (parameters, optimizer state, minibatch order and RNG) in safetensors files.

safetensors, not ``torch.save``: a checkpoint is plain tensors plus a JSON header, so loading one never
unpickles (runs) code from a file. A file holds

* ``model/<name>``: the model's parameters (:meth:`Model.parameters`);
* ``optimizer/<i>/...``: the tensors of each optimizer state (:meth:`OptimizerState.state_dict`), its other
  values in the metadata;
* ``metrics/<name>/...``: the state of each metric with capability ``stateful`` (:meth:`Metric.state_dict`;
  an NTK drift's reference kernel), other values in the metadata;
* ``batches/generator`` and ``batches/order``: the minibatch generator's RNG state and the current epoch's order;
* metadata ``grokbench``: JSON with the run id, step, reasons, model name, configuration and the rest.

Where they live: ``<store>.checkpoints/<run_id>/step-<S>.safetensors`` next to the results store; the store's
``checkpoints`` table records each one (run, step, reasons, path).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .errors import ConfigError

if TYPE_CHECKING:
    from .store import Store

FORMAT = 1


@dataclass
class TrainState:
    """Everything training needs to go on from ``step`` exactly as if it had never stopped."""

    step: int
    params: dict[str, torch.Tensor]
    optimizer: list[dict[str, Any]]
    batches: dict[str, Any]
    #: the state of each metric with capability ``stateful``, by metric name
    metrics: dict[str, Any] = field(default_factory=dict)


def row(value: Any, member: int, members: int) -> Any:
    """Member ``member``'s view of a state stacked over ``members`` seeds: row ``member`` of every tensor whose
    leading dimension is the seeds' (the stacked parameters and what an element-wise optimizer keeps per parameter)."""
    if isinstance(value, torch.Tensor):
        return value[member] if value.dim() and value.shape[0] == members else value
    if isinstance(value, dict):
        return {k: row(v, member, members) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(row(v, member, members) for v in value)
    return value


def capture(
    step: int,
    trainable: Any,
    optimizer_states: list[Any],
    batches: list[Any],
    metrics: Sequence[Any] = (),
    member: int = 0,
) -> TrainState:
    """Copy the training state of one run after the evaluation at ``step``: of ``member`` (its rows of the stacked
    tensors, its own optimizer state where each seed has one) when ``trainable`` is a batched program of
    ``len(batches)`` seeds, so that the state is what that run trained alone would have."""
    members = len(batches)
    params = {name: t[member] if members > 1 else t for name, t in trainable.parameters().items()}
    if len(optimizer_states) > 1:  # one state per seed
        optimizer = [optimizer_states[member].state_dict()]
    else:
        optimizer = [row(s.state_dict(), member, members) if members > 1 else s.state_dict() for s in optimizer_states]
    b = batches[member]
    return TrainState(
        step=step,
        params=_copy(params),
        optimizer=_copy(optimizer),
        batches={"generator": b.generator.get_state(), "order": b.order.detach().cpu().clone(), "pos": b.pos},
        metrics={m.name: _copy(m.state_dict()) for m in metrics if m.supports("stateful")},
    )


def stack_rows(template: Any, rows: Sequence[Any]) -> Any:
    """The inverse of :func:`row`: one state stacked over ``len(rows)`` seeds from each seed's view of it.
    ``template`` is the stacked state as built (None where it has nothing yet, as momentum before the first
    step): a tensor of it that is not the seeds' (its leading dimension is not theirs) is shared, taken from
    the first row; every other tensor is the rows stacked."""
    first = rows[0]
    if isinstance(first, torch.Tensor):
        shared = isinstance(template, torch.Tensor) and not (template.dim() and template.shape[0] == len(rows))
        return first if shared else torch.stack(list(rows))
    if isinstance(first, dict):
        keyed = template if isinstance(template, dict) else {}
        return {k: stack_rows(keyed.get(k), [r[k] for r in rows]) for k in first}
    if isinstance(first, (list, tuple)):
        listed = template if isinstance(template, (list, tuple)) else [None] * len(first)
        return type(first)(stack_rows(listed[j], [r[j] for r in rows]) for j in range(len(first)))
    return first


@torch.no_grad()
def restore(
    states: Sequence[TrainState],
    trainable: Any,
    optimizer_states: list[Any],
    batches: list[Any],
    metrics: Sequence[Sequence[Any]] = (),
) -> None:
    """Put captured states back into a freshly built model, optimizer, minibatch samplers and stateful metrics:
    one state per run, ``len(states)`` > 1 for the seeds of a batched program (each into its rows of the
    stacked tensors, its own optimizer state where each seed has one, its sampler, its metrics), all at one
    step. The inverse of :func:`capture`."""
    members = len(states)
    for name, tensor in trainable.parameters().items():
        for i, state in enumerate(states):
            (tensor[i] if members > 1 else tensor).copy_(state.params[name])
    if len(optimizer_states) > 1:  # one state per seed
        for s, state in zip(optimizer_states, states):
            s.load_state_dict(state.optimizer[0])
    else:
        for k, s in enumerate(optimizer_states):
            saved = [state.optimizer[k] for state in states]
            s.load_state_dict(stack_rows(s.state_dict(), saved) if members > 1 else saved[0])
    for b, state in zip(batches, states):
        b.generator.set_state(state.batches["generator"])
        b.order, b.pos = state.batches["order"].to(b.x.device), int(state.batches["pos"])
    for member_metrics, state in zip(metrics, states):
        for metric in member_metrics:
            if metric.supports("stateful"):
                metric.load_state_dict(state.metrics[metric.name])


def missing_metric_states(state: TrainState, metrics: Sequence[Any]) -> list[str]:
    """The stateful metrics (components) whose state ``state`` does not hold."""
    return [m.name for m in metrics if m.supports("stateful") and m.name not in state.metrics]


def _copy(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_copy(v) for v in value)
    return value


# ------------------------------------------------------------------ files


def _encode(value: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON for ``value`` with each tensor moved into ``tensors`` (dicts as key/value pairs: int keys stay ints)."""
    if isinstance(value, torch.Tensor):
        tensors[prefix] = value.detach().cpu().contiguous().clone()
        return {"__tensor__": prefix}
    if isinstance(value, dict):
        return {"__dict__": [[k, _encode(v, f"{prefix}/{k}", tensors)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return [_encode(v, f"{prefix}/{i}", tensors) for i, v in enumerate(value)]
    return value


def _decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, dict) and "__tensor__" in value:
        return tensors[value["__tensor__"]]
    if isinstance(value, dict) and "__dict__" in value:
        return {k: _decode(v, tensors) for k, v in value["__dict__"]}
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    return value


def write(path: Path, state: TrainState, info: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` (atomically: a temporary file renamed into place)."""
    from safetensors.torch import save_file

    tensors = {f"model/{k}": v.detach().cpu().contiguous().clone() for k, v in state.params.items()}
    optimizer = _encode(state.optimizer, "optimizer", tensors)
    metrics = _encode(state.metrics, "metrics", tensors)
    tensors["batches/generator"] = state.batches["generator"].clone()
    tensors["batches/order"] = state.batches["order"].clone()
    header = {
        **info,
        "format": FORMAT,
        "step": state.step,
        "optimizer": optimizer,
        "metrics": metrics,
        "batches_pos": state.batches["pos"],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"grokbench": json.dumps(header)})
    os.replace(tmp, path)


def read(path: str | os.PathLike[str]) -> tuple[TrainState, dict[str, Any]]:
    """A checkpoint file's state and header (ConfigError when it is missing or not a grokbench checkpoint)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no checkpoint file {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = json.loads((f.metadata() or {})["grokbench"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types for a file that is not one
        raise ConfigError(f"{path} is not a grokbench checkpoint ({type(exc).__name__}: {exc})") from None
    state = TrainState(
        step=int(header["step"]),
        params={k[len("model/") :]: v for k, v in tensors.items() if k.startswith("model/")},
        optimizer=_decode(header["optimizer"], tensors),
        metrics=_decode(header.get("metrics", {"__dict__": []}), tensors),
        batches={
            "generator": tensors["batches/generator"],
            "order": tensors["batches/order"],
            "pos": header["batches_pos"],
        },
    )
    return state, header


def check_matches(state: TrainState, model: Any, what: str) -> None:
    """ConfigError unless ``state`` has exactly the model's parameters, with their shapes and dtypes."""
    params = model.parameters()
    if set(params) != set(state.params):
        raise ConfigError(
            f"{what} does not match the model: it has parameters {sorted(state.params)}, the model {sorted(params)}"
        )
    for name, tensor in params.items():
        saved = state.params[name]
        if saved.shape != tensor.shape or saved.dtype != tensor.dtype:
            raise ConfigError(
                f"{what} does not match the model: parameter {name} is {saved.dtype} {list(saved.shape)} in the file, "
                f"{tensor.dtype} {list(tensor.shape)} in the model"
            )


# ------------------------------------------------------------------ where they live


def directory(store_path: str | os.PathLike[str], run_id: str) -> Path:
    """``<store>.checkpoints/<run_id>/``."""
    return Path(f"{store_path}.checkpoints") / run_id


def file_for(store_path: str | os.PathLike[str], run_id: str, step: int) -> Path:
    return directory(store_path, run_id) / f"step-{step}.safetensors"


def find(store: Store, run_id: str, step: int | None = None) -> dict[str, Any]:
    """The stored checkpoint of a run at ``step`` (default: its last one), with an existing ``path``."""
    known = store.checkpoints(run_id)
    if not known:
        raise ConfigError(f"run {run_id} has no checkpoint in {store.path}")
    if step is None:
        chosen = known[-1]
    else:
        chosen = next((c for c in known if c["step"] == step), {})
        if not chosen:
            steps = ", ".join(str(c["step"]) for c in known)
            raise ConfigError(f"run {run_id} has no checkpoint at step {step} (its checkpoints: steps {steps})")
    path = Path(chosen["path"])
    if not path.is_file():  # the store moved: look next to it
        path = file_for(store.path, run_id, chosen["step"])
    if not path.is_file():
        raise ConfigError(f"checkpoint file of run {run_id} at step {chosen['step']} is missing ({chosen['path']})")
    return {**chosen, "path": path}


def export(store: Store, run_id: str, out: str | os.PathLike[str], step: int | None = None) -> dict[str, Any]:
    """Copy one checkpoint of a run to ``out``; returns the stored checkpoint it copied."""
    run = store.get_run(run_id)
    chosen = find(store, run["id"], step)
    out = Path(out)
    if not out.parent.is_dir():
        raise ConfigError(f"cannot write {out}: directory {out.parent} does not exist")
    shutil.copyfile(chosen["path"], out)
    return chosen


def load_checkpoint(
    run_or_path: str | os.PathLike[str],
    *,
    store: str | os.PathLike[str] | Store | None = None,
    step: int | None = None,
    registry: Any = None,
) -> Any:
    """The model plugin of a run, built from the run's configuration, with a checkpoint's parameters loaded.

    ``run_or_path`` is a checkpoint file (``.safetensors``) or a run id (prefix) in ``store`` (default
    store when None); ``step`` picks a checkpoint of that run (default: its last).
    """
    from .building import prepare
    from .config import RunConfig
    from .plugin_manager import get_registry
    from .store import Store

    registry = registry or get_registry()
    path = Path(run_or_path)
    if path.suffix == ".safetensors" or path.is_file():
        state, header = read(path)
    else:
        db = store if isinstance(store, Store) else Store(store, create=False)
        run = db.get_run(str(run_or_path))
        state, header = read(find(db, run["id"], step)["path"])
    cfg = RunConfig.model_validate(header["config"])
    prep = prepare(cfg, registry)
    check_matches(state, prep.model, f"checkpoint of run {header.get('run_id')} at step {state.step}")
    with torch.no_grad():
        for name, tensor in prep.model.parameters().items():
            tensor.copy_(state.params[name])
    return prep.model

"""Checkpoint files: a :class:`~grokbench.training.state.TrainState` as safetensors (plain tensors and a JSON
header: loading one never runs code), at ``<store>.checkpoints/<run_id>/step-<S>.safetensors``."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from grokbench.errors import ConfigError
from grokbench.training.state import TrainState

if TYPE_CHECKING:
    from grokbench.storage.store import Store


FORMAT = 1


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

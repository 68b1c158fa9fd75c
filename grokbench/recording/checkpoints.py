"""Checkpoint files: a :class:`~grokbench.training.state.TrainState` as safetensors (plain tensors and a JSON
header: loading one never runs code), at ``<store>.checkpoints/<run_id>/step-<S>.safetensors``.

The header names the run (``run_id``), its configuration (``config``, ``config_hash``) and carries a ``digest``
(SHA-256 of the header's other fields and of every tensor's name, dtype, shape and bytes), written with the file and
checked whenever it is read: a damaged or edited file, or another run's file in its place, is refused with one
line, never resumed. A file written before the digest existed is read with a notice."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from grokbench.errors import ConfigError, describe
from grokbench.files import write_bytes
from grokbench.training.state import TrainState

if TYPE_CHECKING:
    from grokbench.storage.store import Store

#: 2: the header carries ``config_hash`` and ``digest``
FORMAT = 2
NO_DIGEST = "has no digest (written by an older grokbench): its contents cannot be verified"


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


def digest(header: dict[str, Any], tensors: dict[str, torch.Tensor]) -> str:
    """``sha256:...`` of a header (its ``digest`` left out) and of each tensor's name, dtype, shape and bytes."""
    h = hashlib.sha256(json.dumps({k: v for k, v in header.items() if k != "digest"}, sort_keys=True).encode())
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"\0{name}\0{t.dtype}\0{list(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return f"sha256:{h.hexdigest()}"


def write(path: Path, state: TrainState, info: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` with ``info`` (run_id, config, config_hash, ...) in its header and its digest;
    atomically, never through a symlink (:func:`grokbench.files.write_bytes`)."""
    from safetensors.torch import save

    tensors = {f"model/{k}": v.detach().cpu().contiguous().clone() for k, v in state.params.items()}
    optimizer = _encode(state.optimizer, "optimizer", tensors)
    metrics = _encode(state.metrics, "metrics", tensors)
    tensors["batches/generator"] = state.batches["generator"].clone()
    tensors["batches/order"] = state.batches["order"].clone()
    header = {
        **{k: v for k, v in info.items() if k != "digest"},
        "format": FORMAT,
        "step": state.step,
        "optimizer": optimizer,
        "metrics": metrics,
        "batches_pos": state.batches["pos"],
    }
    header = json.loads(json.dumps(header))  # the digest is of the header as it is read back (tuples as lists)
    header["digest"] = digest(header, tensors)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(path, save(tensors, metadata={"grokbench": json.dumps(header)}))


def read(path: str | os.PathLike[str]) -> tuple[TrainState, dict[str, Any]]:
    """A checkpoint file's state and header; ConfigError (one line) when it is missing, not a grokbench checkpoint,
    or fails its digest."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no checkpoint file {path}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    return parse(data, str(path))


def parse(data: bytes, where: str) -> tuple[TrainState, dict[str, Any]]:
    """:func:`read` of a file's bytes (``where`` names it in errors)."""
    from safetensors.torch import load

    try:
        size = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8 : 8 + size]).get("__metadata__") or {}
        header = json.loads(meta["grokbench"])
        tensors = load(data)
    except Exception as exc:  # safetensors raises its own error types for a file that is not one
        raise ConfigError(f"{where} is not a grokbench checkpoint ({type(exc).__name__}: {exc})") from None
    problem = _header_problem(header, tensors)
    if problem:
        raise ConfigError(f"{where} is not a grokbench checkpoint: {problem}")
    if "digest" in header and header["digest"] != digest(header, tensors):
        raise ConfigError(
            f"checkpoint {where} is damaged or was edited: its contents do not match the digest in its header"
        )
    try:
        state = TrainState(
            step=header["step"],
            params={k[len("model/") :]: v for k, v in tensors.items() if k.startswith("model/")},
            optimizer=_decode(header["optimizer"], tensors),
            metrics=_decode(header.get("metrics", {"__dict__": []}), tensors),
            batches={
                "generator": tensors["batches/generator"],
                "order": tensors["batches/order"],
                "pos": header["batches_pos"],
            },
        )
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise ConfigError(f"{where} is not a grokbench checkpoint: its header is malformed ({describe(exc)})") from None
    return state, header


def _header_problem(header: Any, tensors: dict[str, torch.Tensor]) -> str | None:
    """What makes a header not a grokbench checkpoint's, or None."""
    if not isinstance(header, dict):
        return f"its header is a JSON {type(header).__name__}, not an object"
    if not isinstance(header.get("format"), int) or header["format"] > FORMAT:
        return f"its header's format {header.get('format')!r} is not one this grokbench reads (1 to {FORMAT})"
    for key in ("step", "batches_pos"):
        value = header.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return f"its header's '{key}' is {value!r}, not a step"
    for key in ("run_id", "optimizer", "config"):
        if key not in header:
            return f"its header has no '{key}'"
    for name in ("batches/generator", "batches/order"):
        if name not in tensors:
            return f"it has no tensor '{name}'"
    return None


def file_for(store: Store, run_id: str, step: int) -> Path:
    """Where a run's checkpoint at ``step`` is written: ``<store>.checkpoints/<run_id>/step-<step>.safetensors``
    (its folders created, none of them a symlink)."""
    return store.prepare("checkpoints", run_id, f"step-{step}.safetensors")


def find(store: Store, run_id: str, step: int | None = None) -> dict[str, Any]:
    """The stored checkpoint of a run at ``step`` (default: its last), with ``path`` the file in this store's
    folder: a store reads its own files only, wherever it is opened."""
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
    if not chosen["path"].is_file():
        raise ConfigError(f"checkpoint file of run {run_id} at step {chosen['step']} is missing ({chosen['path']})")
    return chosen


def verify(header: dict[str, Any], run: dict[str, Any], step: int, where: str) -> None:
    """Refuse (ConfigError) a checkpoint whose header names another run, another configuration (its steps
    aside: a resumed run trains on to more steps) or another step than the one recorded for it."""
    from pydantic import ValidationError

    from grokbench.config.run import RunConfig

    if header.get("run_id") != run["id"]:
        raise ConfigError(
            f"checkpoint {where} belongs to run {header.get('run_id')!r} (its header), not to run {run['id']}; "
            f"refusing it"
        )
    if header["step"] != step:
        raise ConfigError(f"checkpoint {where} holds step {header['step']}, recorded as step {step}; refusing it")
    ours = RunConfig.model_validate(run["config"])
    try:
        theirs = RunConfig.model_validate(header["config"])
    except ValidationError:
        raise ConfigError(f"checkpoint {where} has no valid run configuration in its header") from None
    if header.get("config_hash", theirs.hash) != theirs.hash:
        raise ConfigError(
            f"checkpoint {where}: its header's config hash {header['config_hash']} is not its configuration's "
            f"({theirs.hash}); refusing it"
        )
    same_steps = theirs.model_copy(update={"train": theirs.train.model_copy(update={"steps": ours.train.steps})})
    if same_steps.hash != ours.hash:
        raise ConfigError(
            f"checkpoint {where} was written for another configuration than run {run['id']}'s (config hash "
            f"{theirs.hash}, the run's {ours.hash}); refusing it"
        )


def load(
    store: Store,
    run: dict[str, Any],
    step: int | None = None,
    notice: Callable[[str], None] | None = None,
    *,
    identity: bool = True,
) -> tuple[dict[str, Any], TrainState, dict[str, Any], bytes]:
    """A run's checkpoint (``step``; default its last) read from the store's folder and verified (its digest and,
    with ``identity``, :func:`verify`): the stored record, the state, the header and the file's bytes. ``notice``
    is told when the file has no digest to check."""
    chosen = find(store, run["id"], step)
    try:
        data = chosen["path"].read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read checkpoint {chosen['path']}: {exc.strerror or exc}") from None
    state, header = parse(data, str(chosen["path"]))
    if identity:
        verify(header, run, chosen["step"], str(chosen["path"]))
    if "digest" not in header and notice is not None:
        notice(f"checkpoint {chosen['path']} {NO_DIGEST}")
    return chosen, state, header, data


def export(store: Store, run_id: str, out: str | os.PathLike[str], step: int | None = None) -> dict[str, Any]:
    """Copy one checkpoint of a run, verified, to ``out`` (atomically, never through a symlink); returns the stored
    checkpoint it copied."""
    run = store.get_run(run_id)
    out = Path(out)
    if not out.parent.is_dir():
        raise ConfigError(f"cannot write {out}: directory {out.parent} does not exist")
    chosen, _, _, data = load(store, run, step)
    try:
        write_bytes(out, data)
    except OSError as exc:
        raise ConfigError(f"cannot write {out}: {exc.strerror or exc}") from None
    return chosen


def check(store: Store) -> tuple[list[str], list[str], int]:
    """``grokbench store check``: every recorded checkpoint file exists in the store's folder, is intact (its
    digest) and belongs to the run, configuration and step recorded for it. Returns the problems, the notices
    (files without a digest, files the store does not record) and how many files were checked."""
    problems, notices = [], []
    sound = store.quick_check()
    if sound != ["ok"]:
        problems.append(f"{store.path}: SQLite's quick_check: {'; '.join(sound[:3])}")
    runs: dict[str, dict[str, Any]] = {}
    recorded = store.checkpoints(locate=False)
    for row in recorded:
        where = f"run {row['run_id']} step {row['step']}"
        try:
            path = store.locate(row["recorded"])
            if not path.is_file():
                problems.append(f"{where}: missing file {path}")
                continue
            run = runs.get(row["run_id"]) or runs.setdefault(row["run_id"], store.get_run(row["run_id"]))
            _, header = read(path)
            verify(header, run, row["step"], str(path))
            if "digest" not in header:
                notices.append(f"{where}: {path} {NO_DIGEST}")
        except ConfigError as exc:
            problems.append(f"{where}: {exc}")
    known = {row["recorded"] for row in recorded}
    folder = store.folder("checkpoints")
    for top, dirs, files in os.walk(folder) if folder.is_dir() and not folder.is_symlink() else ():
        for name in sorted(dirs + files):
            path = Path(top) / name
            if path.is_symlink():
                problems.append(f"{path} is a symlink inside the store's folder")
            elif path.is_file() and store.recorded(path) not in known:
                notices.append(f"{path} is not recorded by the store (not checked)")
    return problems, notices, len(recorded)

"""Logger plugins, each read back with its own library: the jsonl file, TensorBoard's event reader,
mlflow.search_runs, the W&B offline run file. No mocks; a test skips only when its library is absent."""

import glob
import json
import struct
import time

import pytest

from grokbench.api import run
from grokbench.storage.store import Store

TINY = ["task.p=11", "model.width=32", "optimizer.lr=0.01", "train.steps=100", "train.eval_every=50"]


def trained(tmp_path, registry, logger):
    result = run("modadd-cls", "quadratic", overrides=TINY, store=tmp_path / "s.db", registry=registry, loggers=[logger])
    curves = Store(tmp_path / "s.db").curves(result.run_id)
    return result, curves, tmp_path / "s.db.logs"


def test_jsonl_logger_writes_every_event_as_it_happens(tmp_path, registry):
    result, curves, logs = trained(tmp_path, registry, "jsonl")
    events = [json.loads(line) for line in (logs / f"{result.run_id}.jsonl").read_text().splitlines()]
    assert events[0]["event"] == "start" and events[-1]["event"] == "end"
    assert events[0]["config"]["task"]["params"]["p"] == 11 and events[0]["run_id"] == result.run_id
    evaluations = [e for e in events if e["event"] == "evaluation"]
    assert [e["step"] for e in evaluations] == list(curves["step"])
    assert evaluations[-1]["values"]["train_acc"] == curves["train_acc"].iloc[-1]
    saved = [(e["step"], e["reasons"]) for e in events if e["event"] == "checkpoint"]
    assert saved == [(c["step"], c["reasons"]) for c in Store(tmp_path / "s.db").checkpoints(result.run_id)] and saved[-1] == (100, ["end"])
    assert events[-1]["status"] == "completed" and events[-1]["summary"]["final_test_acc"] == result.summary["final_test_acc"]


def test_tensorboard_logger_read_back_with_the_event_reader(tmp_path, registry):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result, curves, logs = trained(tmp_path, registry, "tensorboard")
    acc = EventAccumulator(str(logs / "tensorboard" / result.run_id))
    acc.Reload()
    points = acc.Scalars("train_acc")
    assert [p.step for p in points] == list(curves["step"])
    assert [p.value for p in points] == pytest.approx(list(curves["train_acc"]), rel=1e-6)  # stored as float32
    assert "test_loss" in acc.Tags()["scalars"]


def test_mlflow_logger_read_back_with_search_runs(tmp_path, registry, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path / 'tracking.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    result, curves, _ = trained(tmp_path, registry, "mlflow")
    mlflow.set_tracking_uri(uri)
    found = mlflow.search_runs(experiment_names=["grokbench"])
    assert len(found) == 1
    row = found.iloc[0]
    assert row["tags.grokbench.run_id"] == result.run_id and row["status"] == "FINISHED"
    assert row["params.task.p"] == "11" and row["params.model"] == "quadratic"
    assert row["metrics.train_acc"] == pytest.approx(curves["train_acc"].iloc[-1])
    history = mlflow.MlflowClient(uri).get_metric_history(row["run_id"], "test_acc")
    assert [m.step for m in history] == list(curves["step"])


def _wandb_records(path):
    """The records of a W&B offline run file (a LevelDB-style log of protobuf records)."""
    data = open(path, "rb").read()
    assert data[:4] == b":W&B"
    pos, buf = 7, b""
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 1:
            yield chunk
        elif kind == 2:
            buf = chunk
        elif kind == 3:
            buf += chunk
        elif kind == 4:
            yield buf + chunk


def test_wandb_logger_offline_read_back_from_the_run_directory(tmp_path, registry, monkeypatch):
    pytest.importorskip("wandb")
    from wandb.proto import wandb_internal_pb2 as pb

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    result, curves, logs = trained(tmp_path, registry, "wandb")
    (path,) = glob.glob(str(logs / "wandb" / f"offline-run-*-{result.run_id}" / f"run-{result.run_id}.wandb"))
    deadline = time.time() + 60
    while True:  # wandb-core (a separate process) may still be writing the file when finish() returns, on a busy machine
        history, config, kinds = [], {}, []
        for raw in _wandb_records(path):
            record = pb.Record()
            record.ParseFromString(raw)
            kind = record.WhichOneof("record_type")
            kinds.append(kind)
            if kind == "history":
                history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
            elif kind == "run":
                config = {u.key: json.loads(u.value_json) for u in record.run.config.update}
        if "exit" in kinds or time.time() > deadline:
            break
        time.sleep(0.5)
    assert [h["_step"] for h in history] == list(curves["step"])
    assert [h["train_acc"] for h in history] == pytest.approx(list(curves["train_acc"]))
    assert config["task"]["params"]["p"] == 11 and config["model"]["name"] == "quadratic"

"""Loggers: a run's events to a live JSON-lines file, TensorBoard, MLflow or Weights & Biases (offline).

Each writes under the logger directory (``--log-dir``; default ``<store>.logs`` next to the store). The trackers
are extras: ``pip install 'grokbench[tensorboard]'``, ``'grokbench[mlflow]'``, ``'grokbench[wandb]'``.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any

from grokbench import hookimpl
from grokbench.contracts import Logger
from grokbench.files import append_to, folder


def _scalars(record: dict[str, float]) -> dict[str, float]:
    """The finite curve values of an evaluation (trackers reject NaN, and the step is not a curve)."""
    return {k: float(v) for k, v in record.items() if k != "step" and v is not None and math.isfinite(float(v))}


def _flat(config: dict[str, Any]) -> dict[str, Any]:
    from grokbench.reporting.selection import flatten

    out = flatten(config)
    for kind in ("task", "model", "regularizer", "optimizer"):
        out[kind] = config[kind]["name"]
    return {k: v if isinstance(v, (int, float, str, bool)) else json.dumps(v) for k, v in out.items()}


class JsonlLogger(Logger):
    """A live JSON-lines file per run, <log-dir>/<run_id>.jsonl: one line per event, flushed as it happens."""

    name = "jsonl"

    def start(self, run_id, config, info):
        self.file = append_to(self.directory / f"{run_id}.jsonl", root=self.directory)  # never through a symlink
        self._write({"event": "start", "run_id": run_id, "config": config, **info})

    def _write(self, obj: dict[str, Any]) -> None:
        self.file.write(json.dumps({**obj, "time": time.time()}, default=str) + "\n")
        self.file.flush()

    def evaluation(self, step, record):
        self._write({"event": "evaluation", "step": step, "values": {k: v for k, v in record.items() if k != "step"}})

    def checkpoint(self, step, path, reasons):
        self._write({"event": "checkpoint", "step": step, "path": path, "reasons": reasons})

    def end(self, status, summary):
        self._write({"event": "end", "status": status, "summary": summary})
        self.file.close()


class TensorBoardLogger(Logger):
    """TensorBoard event files, <log-dir>/tensorboard/<run_id>/: every curve as a scalar, the config as text."""

    name = "tensorboard"
    requires = ("tensorboard",)
    extra = "tensorboard"

    def start(self, run_id, config, info):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(folder(self.directory, "tensorboard", run_id)))
        self.writer.add_text("config", "```\n" + json.dumps(config, indent=2, sort_keys=True) + "\n```", 0)

    def evaluation(self, step, record):
        for key, value in _scalars(record).items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def checkpoint(self, step, path, reasons):
        self.writer.add_text("checkpoint", f"{path} ({', '.join(reasons)})", step)

    def end(self, status, summary):
        self.writer.add_text("status", status, 0)
        self.writer.close()


class MlflowLogger(Logger):
    """MLflow: a run per grokbench run in experiment 'grokbench' ($MLFLOW_TRACKING_URI, e.g. a sqlite: or file: URI;
    default sqlite:///<log-dir>/mlflow.db); params are the flattened config, metrics the curves by step."""

    name = "mlflow"
    requires = ("mlflow",)
    extra = "mlflow"

    def start(self, run_id, config, info):
        from mlflow import MlflowClient
        from mlflow.entities import Param

        database = folder(self.directory) / "mlflow.db"
        if database.is_symlink() or (database.exists() and not database.is_file()):
            raise ValueError(f"refusing to write {database}: it is not a regular file")
        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{database.resolve()}"
        self.client = MlflowClient(tracking_uri=uri)
        experiment = self.client.get_experiment_by_name("grokbench")
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment("grokbench")
        self.run = self.client.create_run(experiment_id, run_name=run_id, tags={"grokbench.run_id": run_id})
        params = [Param(k, str(v)[:6000]) for k, v in _flat(config).items()]
        for i in range(0, len(params), 100):
            self.client.log_batch(self.run.info.run_id, params=params[i : i + 100])

    def evaluation(self, step, record):
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v in _scalars(record).items()]
        self.client.log_batch(self.run.info.run_id, metrics=metrics)

    def checkpoint(self, step, path, reasons):
        self.client.set_tag(self.run.info.run_id, f"checkpoint.{step}", f"{path} ({', '.join(reasons)})")

    def end(self, status, summary):
        self.client.set_tag(self.run.info.run_id, "grokbench.status", status)
        for key in ("t_memorize", "t_generalize", "grokking_delay"):
            if summary.get(key) is not None:
                self.client.log_metric(self.run.info.run_id, key, float(summary[key]))
        ended = {"completed": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}.get(status, "FINISHED")
        self.client.set_terminated(self.run.info.run_id, ended)


class WandbLogger(Logger):
    """Weights & Biases in offline mode (no login, no network): <log-dir>/wandb/offline-run-*/; upload later
    with 'wandb sync'. The config, every curve by step, the summary."""

    name = "wandb"
    requires = ("wandb",)
    extra = "wandb"

    def start(self, run_id, config, info):
        import wandb

        folder(self.directory, "wandb")  # wandb writes <dir>/wandb/: no symlink on the way
        settings = wandb.Settings(mode="offline", silent=True, console="off", x_disable_stats=True, x_disable_meta=True)
        self.run = wandb.init(
            dir=str(self.directory),
            project="grokbench",
            name=run_id,
            id=run_id,
            config=config,
            settings=settings,
            reinit="create_new",
        )

    def evaluation(self, step, record):
        self.run.log(_scalars(record), step=step)

    def checkpoint(self, step, path, reasons):
        self.run.summary[f"checkpoint_{step}"] = f"{path} ({', '.join(reasons)})"

    def end(self, status, summary):
        self.run.summary.update({"status": status, **{k: v for k, v in summary.items() if v is not None}})
        self.run.finish(exit_code=0 if status in ("completed", "diverged") else 1)


@hookimpl
def register_loggers(register):
    for logger in (JsonlLogger, TensorBoardLogger, MlflowLogger, WandbLogger):
        register(logger)

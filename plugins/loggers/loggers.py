"""Loggers: a run's events to a live JSON-lines file, TensorBoard, MLflow or Weights & Biases (offline).

Each writes under the logger directory (``--log-dir``; default ``<store>.logs`` next to the store). The trackers
are extras: ``pip install 'grokbench[tensorboard]'``, ``'grokbench[mlflow]'``, ``'grokbench[wandb]'``.
"""

from __future__ import annotations

import json
import math
import os
import struct
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


def _quiet_mlflow() -> None:
    """MLflow's loggers (and alembic's, which MLflow's database migrations use) at WARNING: their INFO lines
    ("Creating initial MLflow database tables...") would break the progress bar; warnings still show, but for
    the one pydantic before 2.10 raises at import on MLflow's own models (a field named ``model_*``), which says
    nothing about the run."""
    import logging
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="Field .* has conflict with protected namespace", category=UserWarning
        )
        import mlflow  # noqa: F401  (MLflow sets its logger's level when imported: set ours after)

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


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
    """MLflow: a run per grokbench run in experiment 'grokbench' ($MLFLOW_TRACKING_URI: a database URI such as
    sqlite:///path/mlflow.db, or a tracking server's http(s) address; default sqlite:///<log-dir>/mlflow.db);
    params are the flattened config, metrics the curves by step. MLflow's own INFO lines are kept off the
    terminal (its logger at WARNING), so they do not break the progress bar."""

    name = "mlflow"
    requires = ("mlflow",)
    extra = "mlflow"

    #: seconds to wait for a tracking server's /health before the run is refused
    TIMEOUT = 10.0

    def _uri(self) -> str | None:
        """$MLFLOW_TRACKING_URI, or None for the default database in the log folder."""
        return os.environ.get("MLFLOW_TRACKING_URI") or None

    def ready(self) -> None:
        """Refuse, before any training, a tracking URI MLflow cannot write to: a file store MLflow no longer
        writes (MLflow 3 keeps it in maintenance mode and raises), a database it cannot open, a server that does
        not answer. The default database in the log folder is checked with the folder."""
        _quiet_mlflow()
        uri = self._uri()
        if uri is None:
            return
        from urllib.parse import urlparse

        scheme = urlparse(uri).scheme
        if scheme in ("", "file"):
            raise ValueError(
                f"MLFLOW_TRACKING_URI={uri} is a file store, which this MLflow does not write to; "
                "use a database, e.g. MLFLOW_TRACKING_URI=sqlite:///mlflow.db"
            )
        if scheme in ("http", "https"):
            import urllib.request

            try:
                with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=self.TIMEOUT):
                    pass
            except OSError as exc:
                raise ValueError(f"no MLflow tracking server answers at {uri} ({exc})") from None
            return
        from mlflow import MlflowClient

        try:
            MlflowClient(tracking_uri=uri).search_experiments(max_results=1)  # opens (creates) the database
        except Exception as exc:
            raise ValueError(
                f"MLflow cannot use MLFLOW_TRACKING_URI={uri}: {str(exc).strip().splitlines()[0]}"
            ) from None

    def start(self, run_id, config, info):
        from mlflow import MlflowClient
        from mlflow.entities import Param

        _quiet_mlflow()
        database = folder(self.directory) / "mlflow.db"
        if database.is_symlink() or (database.exists() and not database.is_file()):
            raise ValueError(f"refusing to write {database}: it is not a regular file")
        uri = self._uri() or f"sqlite:///{database.resolve()}"
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


def read_offline_run(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A W&B offline run read back from its ``run-<id>.wandb`` file, with no server and no login:
    ``{"config": {...}, "history": [{"_step": ..., "train_acc": ...}, ...], "summary": {...}, "exit_code": int}``.

    wandb has no public reader of this file (``wandb sync`` uploads it; ``wandb leet`` shows it in a terminal
    UI). The file is a log of wandb's protobuf ``Record`` messages (``wandb.proto``) framed as LevelDB's log
    format: 32 KiB blocks of chunks, each with a 7-byte header (CRC, length, type: full, first, middle, last)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = open(path, "rb").read()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run file")
    out: dict[str, Any] = {"config": {}, "history": [], "summary": {}, "exit_code": None}
    for raw in _log_records(data, start=7):
        record = pb.Record()  # type: ignore[attr-defined]
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["config"].update({u.key: json.loads(u.value_json) for u in record.run.config.update})
        elif kind == "config":
            out["config"].update({u.key: json.loads(u.value_json) for u in record.config.update})
        elif kind == "history":
            item = record.history.item
            out["history"].append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in item})
        elif kind == "summary":
            out["summary"].update(
                {u.key or "/".join(u.nested_key): json.loads(u.value_json) for u in record.summary.update}
            )
        elif kind == "exit":
            out["exit_code"] = record.exit.exit_code
    return out


def _log_records(data: bytes, start: int, block: int = 32768) -> Any:
    """The records of a LevelDB-format log (after a header of ``start`` bytes), reassembled from their chunks."""
    pos, pending = start, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        length, kind = struct.unpack("<HB", data[pos + 4 : pos + 7])
        if length == 0 and kind == 0:  # zero padding up to the block's end
            pos += left
            continue
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 1:  # a whole record
            yield chunk
        elif kind == 2:  # first chunk
            pending = chunk
        elif kind == 3:  # middle
            pending += chunk
        elif kind == 4:  # last
            yield pending + chunk


@hookimpl
def register_loggers(register):
    for logger in (JsonlLogger, TensorBoardLogger, MlflowLogger, WandbLogger):
        register(logger)

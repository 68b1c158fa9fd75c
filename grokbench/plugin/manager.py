"""Loading plugins: entry points of the ``grokbench`` group, through pluggy, each one isolated.

Plugins load on first use, never at import. A plugin that fails to import (anything raised, ``SystemExit``
included, ``KeyboardInterrupt`` not), raises or registers something invalid, or implements a hook grokbench
does not know (a misspelled ``register_model``; one marked ``optionalhook=True`` is exempt) is kept as
*broken* with its reason; the others still work.

A plugin module may declare the plugin contracts it supports, ``grokbench_contract = ">=4,<6"`` (a version
specifier over :data:`grokbench.version.CONTRACT`); outside that range it is broken, with a line naming the
range and this grokbench's contract. Deprecation notices of its classes (``ContractDeprecationWarning``) are
kept on its :class:`PluginInfo` and shown once per process by :func:`get_registry`.

For debugging: ``GROKBENCH_DISABLE_PLUGINS`` (comma-separated entry-point names; ``--disable-plugin``) skips
those plugins, and ``GROKBENCH_NO_ENTRY_POINTS=1`` (``--no-entry-points``) loads no entry point at all.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pluggy
from packaging.specifiers import InvalidSpecifier, SpecifierSet

from grokbench.errors import describe
from grokbench.plugin import hookspecs
from grokbench.version import CONTRACT, __version__

# the registry imports the contracts, hence torch: imported on first use, so that `grokbench --help` stays light
if TYPE_CHECKING:
    from grokbench.plugin.registry import Registry

PROJECT = "grokbench"
ENTRY_POINT_GROUP = "grokbench"
DISABLE_ENV = "GROKBENCH_DISABLE_PLUGINS"
NO_ENTRY_POINTS_ENV = "GROKBENCH_NO_ENTRY_POINTS"
#: set once a process has shown the plugins' notices, so that its workers do not repeat them
NOTICES_SHOWN_ENV = "GROKBENCH_NOTICES_SHOWN"
#: the module attribute in which a plugin declares the plugin contracts it supports
CONTRACT_ATTRIBUTE = "grokbench_contract"

hookimpl = pluggy.HookimplMarker(PROJECT)


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    seen: set[tuple[str, str]] = set()
    found = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if (ep.name, ep.value) not in seen:
            seen.add((ep.name, ep.value))
            found.append(ep)
    return sorted(found, key=lambda ep: ep.name)


def _collect(pm: pluggy.PluginManager, plugin: Any, others: list[Any]) -> list[tuple[str, str, Any]]:
    """Call one plugin's registration hooks and validate what it registers."""
    from grokbench.plugin.registry import KINDS, validate_component

    staged: list[tuple[str, str, Any]] = []
    keys: set[tuple[str, str]] = set()
    for kind, (hook_name, _) in KINDS.items():

        def register(obj: Any, _kind: str = kind) -> None:
            key = validate_component(_kind, obj)
            if (_kind, key) in keys:
                raise ValueError(f"registers {_kind} '{key}' twice")
            keys.add((_kind, key))
            staged.append((_kind, key, obj))

        pm.subset_hook_caller(hook_name, remove_plugins=others)(register=register)
    return staged


def _unknown_hooks(pm: pluggy.PluginManager, plugin: Any) -> list[str]:
    """The hooks ``plugin`` implements that no specification declares, except those marked ``optionalhook=True``
    (``pm.check_pending``, per plugin)."""
    names = []
    for name in dir(pm.hook):
        caller = getattr(pm.hook, name)
        if isinstance(caller, pluggy.HookCaller) and not caller.has_spec():
            if any(impl.plugin is plugin and not impl.optionalhook for impl in caller.get_hookimpls()):
                names.append(name)
    return sorted(names)


def contract_problem(plugin: Any) -> str | None:
    """Why ``plugin`` cannot load under this grokbench's contract (its ``grokbench_contract``), or None."""
    declared = getattr(plugin, CONTRACT_ATTRIBUTE, None)
    if declared is None:
        return None
    try:
        supported = SpecifierSet(declared) if isinstance(declared, str) else None
    except InvalidSpecifier:
        supported = None
    if supported is None:
        return f"declares {CONTRACT_ATTRIBUTE} = {declared!r}, not a version specifier such as '>={CONTRACT}'"
    if str(CONTRACT) in supported:
        return None
    return (
        f"supports plugin contract {declared}, but this grokbench {__version__} has contract {CONTRACT} "
        "(install a release of the plugin for it, or a grokbench whose contract it supports; see CHANGELOG.md)"
    )


def _notices(plugin: Any, staged: list[tuple[str, str, Any]]) -> list[str]:
    """The contract notices of the classes a plugin registers or defines in its module, each once."""
    from grokbench.plugin.contracts.base import contract_notices

    classes = [obj for _, _, obj in staged if isinstance(obj, type)]
    module = getattr(plugin, "__name__", None)
    classes += [
        obj for obj in getattr(plugin, "__dict__", {}).values() if isinstance(obj, type) and obj.__module__ == module
    ]
    return list(dict.fromkeys(n for cls in classes for n in contract_notices(cls)))


def _normalize(distribution: str) -> str:
    return distribution.lower().replace("_", "-").replace(".", "-")


def disabled_names() -> list[str]:
    """The entry-point names listed in ``GROKBENCH_DISABLE_PLUGINS`` (comma-separated), in order."""
    return [n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()]


def entry_points_enabled() -> bool:
    """False when ``GROKBENCH_NO_ENTRY_POINTS`` is set to anything but '', '0' or 'false'."""
    return os.environ.get(NO_ENTRY_POINTS_ENV, "").strip().lower() in ("", "0", "false", "no")


def load_plugins(
    extra: Iterable[tuple[str, Any]] = (), entry_points: bool = True, distributions: Iterable[str] | None = None
) -> Registry:
    """Load the entry-point plugins (and ``extra`` (name, plugin) pairs, for tests) into a Registry.

    An ``extra`` plugin replaces the entry point of its name (test the copy under development while an older
    one is installed). ``distributions``, when given, loads only grokbench's own entry points and theirs.
    """
    from grokbench.plugin.registry import KINDS, PluginInfo, Registry

    allowed = None if distributions is None else {_normalize(PROJECT), *(_normalize(d) for d in distributions)}
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    disabled = set(disabled_names())
    extra = list(extra)
    replaced = {name for name, _ in extra}
    registry = Registry()
    loaded: list[tuple[PluginInfo, Any]] = []

    candidates: list[tuple[PluginInfo, Any]] = []
    # name and version, read once per distribution (its entry points share one Distribution; a read parses METADATA)
    dist_meta: dict[int, tuple[str | None, str | None]] = {}
    if entry_points and entry_points_enabled():
        for ep in _entry_points():
            if ep.name in replaced:
                continue
            dist = getattr(ep, "dist", None)
            if id(dist) not in dist_meta:
                dist_meta[id(dist)] = (dist.name, dist.version) if dist is not None else (None, None)
            dist_name, dist_version = dist_meta[id(dist)]
            if allowed is not None and (dist_name is None or _normalize(dist_name) not in allowed):
                continue
            info = PluginInfo(ep.name, dist_name, dist_version, module=ep.value)
            if ep.name in disabled:
                info.disabled = True
                registry.plugins.append(info)
                continue
            candidates.append((info, ep))
    entry_point_sources = [ep for _, ep in candidates]
    for name, plugin in extra:
        candidates.append((PluginInfo(name), plugin))

    for info, source in candidates:
        try:
            # an entry point by identity too: once mlflow imports the importlib_metadata backport,
            # entry_points() yields the backport's EntryPoint class
            is_entry_point = isinstance(source, importlib.metadata.EntryPoint) or any(
                source is ep for ep in entry_point_sources
            )
            plugin = source.load() if is_entry_point else source
            pm.register(plugin, name=info.name)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # a broken plugin must not take grokbench down, even by SystemExit
            info.error = f"failed to load: {describe(exc)}"
            registry.plugins.append(info)
            continue
        problem = contract_problem(plugin)
        if problem:
            info.error = problem
            pm.unregister(plugin)
            registry.plugins.append(info)
            continue
        unknown = _unknown_hooks(pm, plugin)
        if unknown:
            info.error = f"implements unknown hook(s) {', '.join(unknown)} (known: {', '.join(sorted(hook for hook, _ in KINDS.values()))})"
            pm.unregister(plugin)
            registry.plugins.append(info)
            continue
        loaded.append((info, plugin))

    plugins = [p for _, p in loaded]
    for info, plugin in loaded:
        others = [p for p in plugins if p is not plugin]
        try:
            staged = _collect(pm, plugin, others)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            info.error = f"failed to register: {describe(exc)}"
            pm.unregister(plugin)
            registry.plugins.append(info)
            continue
        info.notices = _notices(plugin, staged)
        registry.add_plugin(info, staged)
    return registry


def configure_loading(*, no_entry_points: bool = False, disable: Iterable[str] = ()) -> None:
    """Set the debugging switches for this process (and the workers it starts), then reload on next use."""
    if no_entry_points:
        os.environ[NO_ENTRY_POINTS_ENV] = "1"
    names = disabled_names() + list(disable)
    if names:
        os.environ[DISABLE_ENV] = ",".join(dict.fromkeys(names))
    get_registry.cache_clear()


@functools.lru_cache(maxsize=1)
def get_registry() -> Registry:
    """The registry of the installed plugins, loaded once per process; their notices go to stderr then, once per
    process tree (the worker processes a command starts inherit ``GROKBENCH_NOTICES_SHOWN``)."""
    registry = load_plugins()
    notices = [f"grokbench: notice: plugin {p.label}: {n}" for p in registry.plugins for n in p.notices]
    if notices and not os.environ.get(NOTICES_SHOWN_ENV):
        print("\n".join(notices), file=sys.stderr)
        os.environ[NOTICES_SHOWN_ENV] = "1"
    return registry

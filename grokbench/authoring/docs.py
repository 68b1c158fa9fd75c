"""The reference part of docs/plugins.md, generated from the docstrings of hookspecs.py and the contracts package.

    python -m grokbench.authoring.docs            # rewrite the generated section of docs/plugins.md
    python -m grokbench.authoring.docs --check    # exit 1 (and say so) if it is out of date

The section between :data:`BEGIN` and :data:`END` is replaced; the rest of the
file is prose written by hand. A test fails when the file is out of date, so
the reference and the code cannot drift apart.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import sys
import textwrap
from pathlib import Path
from types import ModuleType

from grokbench.plugin import contracts, hookspecs
from grokbench.plugin.manager import ENTRY_POINT_GROUP, PROJECT
from grokbench.plugin.registry import KINDS

BEGIN = "<!-- BEGIN GENERATED REFERENCE: edit grokbench/plugin/hookspecs.py or grokbench/plugin/contracts/, then run `python -m grokbench.authoring.docs` -->"
END = "<!-- END GENERATED REFERENCE -->"
DEFAULT_PATH = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


def hook_specs() -> list[tuple[str, object, dict]]:
    """``(name, function, pluggy options)`` of every hook specification, in source order."""
    marker = f"{PROJECT}_spec"
    return [
        (name, fn, getattr(fn, marker))
        for name, fn in vars(hookspecs).items()
        if inspect.isfunction(fn) and hasattr(fn, marker)
    ]


def _calling_rule(name: str, opts: dict) -> str:
    kinds = [kind for kind, (hook, _) in KINDS.items() if hook == name]
    if opts.get("firstresult"):
        rule = "The first implementation that returns something other than `None` wins; the others are not called."
    elif opts.get("historic"):
        rule = "Historic: implementations registered later are called too, with the same arguments."
    else:
        rule = "Every plugin's implementation is called (pluggy, not `firstresult`)."
    if kinds:
        base = KINDS[kinds[0]][1]
        rule = (
            f"Called once per plugin when plugins are loaded (on first use, never at import). {rule} Each object "
            f"passed to `register` is validated (a subclass of `{contracts.__name__}.{base.__qualname__}`"
            + (
                " instance"
                if kinds[0] in ("preset", "benchmark")
                else " and checked by its `check_class()`: a `name`, a `Params` that forbids unknown keys, no unimplemented required method, and declared capabilities that match the methods it defines"
            )
            + "); if the hook raises or registers something invalid, the whole plugin is marked broken with the reason "
            f"and none of its registrations are kept. Registers component kind `{kinds[0]}`."
        )
    return rule


def _hook_section() -> str:
    out = [
        "### Hooks",
        "",
        f"Entry-point group: `{ENTRY_POINT_GROUP}`. Decorate implementations with `grokbench.hookimpl`.",
        "",
    ]
    nodes = {n.name: n for n in ast.parse(inspect.getsource(hookspecs)).body if isinstance(n, ast.FunctionDef)}
    for name, fn, opts in hook_specs():
        sig = _signature(nodes[name])
        out += [
            f"#### `{name}{sig}`",
            "",
            inspect.getdoc(fn) or "(undocumented)",
            "",
            f"*Calling rules.* {_calling_rule(name, opts)}",
            "",
        ]
    return "\n".join(out)


def _signature(node: ast.FunctionDef) -> str:
    """The signature as written in the source (annotations unevaluated, as the author wrote them)."""
    return f"({ast.unparse(node.args)})" + (f" -> {ast.unparse(node.returns)}" if node.returns else "")


def _comment_above(lines: list[str], lineno: int) -> str:
    """The ``#:`` comment lines directly above source line ``lineno`` (1-based)."""
    found: list[str] = []
    i = lineno - 2
    while i >= 0 and lines[i].strip().startswith("#:"):
        found.insert(0, lines[i].strip()[2:].strip())
        i -= 1
    return " ".join(found)


def method_status(cls: type, name: str) -> str:
    """``required`` (abstract), ``capability 'x'`` (a member of an optional capability) or ``has a default``."""
    if name == "__init__":
        return "constructor: grokbench calls it"
    if name in getattr(cls, "__abstractmethods__", ()):
        return "**required**"
    for cap, spec in getattr(cls, "CAPABILITIES", {}).items():
        if name in spec.requires or name in spec.optional:
            return f"capability `{cap}`"
    return "has a default"


def _capability_table(cls: type) -> list[str]:
    caps = vars(cls).get("CAPABILITIES")
    if not caps:
        return []
    rows = [
        f"| `{name}` | {', '.join(f'`{m}`' for m in spec.requires) or '-'} | {', '.join(f'`{m}`' for m in spec.optional) or '-'} | {spec.doc} |"
        for name, spec in caps.items()
    ]
    return [
        "Capabilities (declare in `capabilities`):",
        "",
        "| capability | requires | may override | meaning |",
        "| --- | --- | --- | --- |",
        *rows,
        "",
    ]


def _class_section(cls: type, node: ast.ClassDef, lines: list[str]) -> str:
    bases = ", ".join(b.__name__ for b in cls.__bases__ if b is not object)
    out = [f"#### `{cls.__name__}`" + (f" ({bases})" if bases else ""), "", ast.get_docstring(node) or "", ""]
    attrs, methods = [], []
    for item in node.body:
        if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            text = f"{item.target.id}: {ast.unparse(item.annotation)}"
            if item.value is not None:
                text += f" = {ast.unparse(item.value)}"
            note = _comment_above(lines, item.lineno)
            attrs.append(f"- `{text}`" + (f": {note}" if note else ""))
        elif isinstance(item, ast.FunctionDef) and (not item.name.startswith("_") or item.name == "__init__"):
            sig = _signature(item)
            status = method_status(cls, item.name)
            doc = ast.get_docstring(item) or ""
            methods.append(f"- `{item.name}{sig}` ({status})" + (":\n" + textwrap.indent(doc, "  ") if doc else ""))
    out += _capability_table(cls)
    if attrs:
        out += ["Attributes:", "", *attrs, ""]
    if methods:
        out += ["Methods:", "", *methods, ""]
    return "\n".join(out)


def contract_modules() -> list[ModuleType]:
    """The modules of :mod:`grokbench.plugin.contracts`, in the order of its ``__all__``."""
    names = (getattr(getattr(contracts, name), "__module__", "") for name in contracts.__all__)
    return [sys.modules[m] for m in dict.fromkeys(names) if m.startswith(f"{contracts.__name__}.")]


def _contract_section() -> str:
    out = [
        "### Contracts",
        "",
        "Base classes in `grokbench.plugin.contracts` (one module per kind, in source order). **required**: an "
        "abstract method, registration "
        "refuses a class that leaves it unimplemented; *capability `x`*: define it only with `x` in the class's "
        "`capabilities` (registration checks both ways); *has a default*: override only to change it.",
        "",
        "| kind | hook | base class |",
        "| --- | --- | --- |",
        *[f"| {kind} | `{hook}` | `{base.__qualname__}` |" for kind, (hook, base) in KINDS.items()],
        "",
    ]
    for module in contract_modules():
        source = inspect.getsource(module)
        lines = source.splitlines()
        for node in ast.parse(source).body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                out.append(_class_section(getattr(module, node.name), node, lines))
    return "\n".join(out)


def render() -> str:
    """The generated section, markers included."""
    body = "\n".join([_hook_section(), _contract_section()]).rstrip()
    return f"{BEGIN}\n\n{body}\n\n{END}"


def update(text: str) -> str:
    """``text`` with its generated section replaced by :func:`render` (appended if it has none)."""
    start, end = text.find(BEGIN), text.find(END)
    if start == -1 or end == -1:
        return text.rstrip() + "\n\n" + render() + "\n"
    return text[:start] + render() + text[end + len(END) :]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grokbench.authoring.docs", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is out of date; write nothing")
    parser.add_argument("--path", type=Path, default=DEFAULT_PATH, help=f"default {DEFAULT_PATH}")
    args = parser.parse_args(argv)
    current = args.path.read_text() if args.path.exists() else ""
    wanted = update(current)
    if args.check:
        if wanted != current:
            print(f"{args.path} is out of date: run `python -m grokbench.authoring.docs`", file=sys.stderr)
            return 1
        return 0
    if wanted != current:
        args.path.parent.mkdir(parents=True, exist_ok=True)
        args.path.write_text(wanted)
        print(f"updated {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Re-run the suites the docs quote (resumable) and regenerate docs/figures and the committed leaderboards.

    python docs/regenerate.py                                  # every suite below, inline
    python docs/regenerate.py tasks/paper.toml --executor process --jobs 2
    python docs/regenerate.py --no-train                       # from the stores as they are
    python docs/regenerate.py --check                          # from the stores as they are, compared

For each suite file: ``grokbench suite run FILE --store STORES/NAME.db`` (runs already stored are not trained
again, so an interrupted regeneration resumes), then ``grokbench report --suite NAME`` into a scratch folder.
From that report, ``leaderboard.md`` and ``leaderboard.csv`` go to ``reports/NAME/``, with ``runs.csv`` (one
row per run: entry, seed, status and every summary number, from ``grokbench export``: the per-seed figures
the verdicts quote), and every plot that a page of the docs references as ``figures/NAME-PLOT.png`` (NAME
the suite's name, PLOT the report's file name) goes to ``docs/figures/``. With ``--no-train`` nothing is
trained: each suite is reported from its store as it is. ``--check`` trains and writes nothing: it reports from the stores and compares the leaderboards with the
committed ones (wall-clock columns left out), and each run table with its committed one where there is one.
Each store is named with the SHA-256 of its runs table, so a page names a store by suite and digest, not
by a path on one machine. Errors (exit 1): a leaderboard or run table that differs (every difference is
listed), a referenced figure that the report does not draw or whose suite has no store, a file in
docs/figures/ that no page references (a copy nothing rebuilds). A suite without a store (with --no-train or
--check) is named on stderr, with its committed leaderboard, if any, left as it is.

The suites are named here, not in the core: this script is the docs' build, like ``python -m grokbench.authoring.docs``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import tomllib

ROOT = Path(__file__).resolve().parent.parent
#: the suites whose numbers and figures the docs quote
SUITES = [
    "tasks/paper.toml",
    "tasks/scaling.toml",
    "tasks/paper-mini.toml",
    "tasks/scaling-mini.toml",
    "tasks/verdicts.toml",
    "tasks/beyond-modadd-mini.toml",
    "tasks/beyond-modadd.toml",
    "tasks/kernel-drift.toml",
    "tasks/claims.toml",
]
#: leaderboard columns that measure the machine, not the science
MACHINE_COLUMNS = ("wall_seconds", "wall (s)")


#: columns of ``grokbench export``'s runs table that describe the machine or the process, not the run's numbers
RUN_MACHINE_COLUMNS = (
    "id", "created_at", "config", "wall_seconds", "plugins", "environment", "traceback", "pid", "host",
    "heartbeat", "message", "suite_member_of",
)  # fmt: skip


#: the run table's first columns, kept even where empty (no run memorized or generalized)
RUN_FIRST_COLUMNS = ("entry", "seed", "status", "steps", "t_memorize", "t_generalize")


def suite_name(file: Path) -> str:
    return tomllib.loads(file.read_text(encoding="utf-8"))["suite"]["name"]


def referenced_figures(docs: Path) -> set[str]:
    """File names under figures/ that the docs' markdown pages reference."""
    names: set[str] = set()
    for page in docs.glob("*.md"):
        names |= set(re.findall(r"\(figures/([^)\s]+\.png)\)", page.read_text(encoding="utf-8")))
    return names


def grokbench(*args: str, quiet: bool = False) -> None:
    subprocess.run([sys.executable, "-m", "grokbench", *args], check=True, stdout=subprocess.DEVNULL if quiet else None)


def comparable(csv_text: str) -> pd.DataFrame:
    frame = pd.read_csv(io.StringIO(csv_text), dtype=str, keep_default_na=False)  # compared as printed
    return frame.drop(columns=[c for c in MACHINE_COLUMNS if c in frame.columns])


def differences(name: str, new: Path, committed: Path) -> list[str]:
    if not committed.exists():
        return [f"{name}: no committed leaderboard at {committed}"]
    a, b = comparable(new.read_text(encoding="utf-8")), comparable(committed.read_text(encoding="utf-8"))
    if list(a.columns) != list(b.columns) or len(a) != len(b):
        return [f"{name}: the leaderboard's columns or rows differ from {committed}"]
    out = []
    for column in a.columns:
        for i in (a[column] != b[column]).to_numpy().nonzero()[0]:
            out.append(f"{name}: {a.at[i, 'entry']} {column}: {b.at[i, column]} committed, {a.at[i, column]} now")
    return out


def run_table(exported: Path) -> str:
    """The per-run table of a suite: entry, seed, status, steps and every summary number, sorted by entry and
    seed, without the machine's columns, the config columns (the entry and the leaderboard name the
    configuration) and columns empty in every run."""
    frame = pd.read_csv(exported, dtype=str, keep_default_na=False)
    drop = [c for c in frame.columns if c in RUN_MACHINE_COLUMNS or c.startswith("config.")]
    first = [c for c in RUN_FIRST_COLUMNS if c in frame.columns]
    # summary keys of metrics that no run of the suite selected are empty in every row
    drop += [c for c in frame.columns if c not in first and (frame[c] == "").all()]
    frame = frame.drop(columns=drop)
    frame = frame[first + sorted(c for c in frame.columns if c not in first)]
    frame["_seed"] = pd.to_numeric(frame["seed"])
    frame = frame.sort_values(["entry", "_seed"], kind="stable").drop(columns="_seed")
    return frame.to_csv(index=False)


def run_differences(name: str, new: str, committed: str) -> list[str]:
    a, b = (pd.read_csv(io.StringIO(t), dtype=str, keep_default_na=False) for t in (new, committed))
    if list(a.columns) != list(b.columns) or len(a) != len(b):
        return [f"{name}: the run table's columns or rows differ from the committed runs.csv"]
    out = []
    for column in a.columns:
        for i in (a[column] != b[column]).to_numpy().nonzero()[0]:
            run = f"{a.at[i, 'entry']} seed {a.at[i, 'seed']}"
            out.append(f"{name}: {run} {column}: {b.at[i, column]} committed, {a.at[i, column]} now")
    return out


def owner(figure: str, names: set[str]) -> str | None:
    """The suite a figure name belongs to: the longest suite name it starts with (paper-mini-x before paper-x)."""
    prefixes = [n for n in names if figure.startswith(f"{n}-")]
    return max(prefixes, key=len) if prefixes else None


def regenerate(
    files: list[Path], *, stores: Path, docs: Path, reports: Path, run_options: list[str], check: bool, train: bool
) -> int:
    wanted = referenced_figures(docs)
    names = {suite_name(f) for f in files} | {suite_name(ROOT / s) for s in SUITES if (ROOT / s).exists()}
    problems = [
        f"docs/figures/{f.name}: no page references it (nothing rebuilds it: delete it or reference it)"
        for f in sorted((docs / "figures").glob("*.png"))
        if f.name not in wanted
    ]
    problems += [
        f"the docs reference figures/{f}, which belongs to no suite" for f in sorted(wanted) if not owner(f, names)
    ]
    train = train and not check
    if train:
        stores.mkdir(parents=True, exist_ok=True)
    for file in files:
        name = suite_name(file)
        store = stores / f"{name}.db"
        figures = sorted(f for f in wanted if owner(f, names) == name)
        if train:
            grokbench("suite", "run", str(file), "--store", str(store), "--quiet", *run_options)
        elif not store.exists():
            committed = reports / name / "leaderboard.csv"
            kept = f"; {committed.parent} is left as it was" if committed.exists() else ""
            print(f"{name}: no store at {store}: not reported{kept}", file=sys.stderr)
            problems += [f"{name}: the docs reference figures/{f}, and the suite has no store" for f in figures]
            continue
        with tempfile.TemporaryDirectory() as scratch:
            grokbench("report", "--suite", name, "--store", str(store), "--out", scratch)
            made = Path(scratch)
            exported = made / "export"
            grokbench(
                "export", "--format", "csv", "--suite", name, "--store", str(store), "--out", str(exported), quiet=True
            )
            runs = run_table(exported / "runs.csv")
            (made / "runs.csv").write_text(runs, encoding="utf-8")
            digest = hashlib.sha256(runs.encode()).hexdigest()[:16]
            if check:
                problems += differences(name, made / "leaderboard.csv", reports / name / "leaderboard.csv")
                if (reports / name / "runs.csv").exists():
                    problems += run_differences(name, runs, (reports / name / "runs.csv").read_text(encoding="utf-8"))
            else:
                (reports / name).mkdir(parents=True, exist_ok=True)
                for table in ("leaderboard.md", "leaderboard.csv", "runs.csv"):
                    shutil.copyfile(made / table, reports / name / table)
            for figure in figures:
                plot = made / figure[len(name) + 1 :]
                if not plot.exists():
                    problems.append(f"{name}: the docs reference figures/{figure}, which the report does not draw")
                elif check:
                    committed_figure = docs / "figures" / figure
                    if not committed_figure.exists():
                        problems.append(f"{name}: figures/{figure} is drawn but not in docs/figures")
                else:
                    (docs / "figures").mkdir(exist_ok=True)
                    shutil.copyfile(plot, docs / "figures" / figure)
        print(f"{name}: {store.name}, runs table sha256 {digest}", file=sys.stderr)
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("suites", nargs="*", type=Path, help="suite files (default: the suites the docs quote)")
    parser.add_argument(
        "--stores", type=Path, default=ROOT / "stores", help="folder of the suites' SQLite stores (default: stores/)"
    )
    parser.add_argument("--docs", type=Path, default=ROOT / "docs")
    parser.add_argument("--reports", type=Path, default=ROOT / "reports")
    parser.add_argument("--executor", default="inline")
    parser.add_argument("--jobs", type=int)
    parser.add_argument("--no-train", action="store_true", help="report from the stores as they are; train nothing")
    parser.add_argument(
        "--check",
        action="store_true",
        help="report from the stores, compare with the committed leaderboards; write nothing",
    )
    args = parser.parse_args(argv)
    files = args.suites or [ROOT / s for s in SUITES]
    run_options = ["--executor", args.executor] + (["--jobs", str(args.jobs)] if args.jobs else [])
    return regenerate(
        files,
        stores=args.stores,
        docs=args.docs,
        reports=args.reports,
        run_options=run_options,
        check=args.check,
        train=not args.no_train,
    )


if __name__ == "__main__":
    sys.exit(main())

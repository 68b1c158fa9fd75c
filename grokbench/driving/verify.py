"""``grokbench bench verify``: a submission bundle checked against the protocol it claims, then partly re-run
(docs/benchmark.md, "Submitting a result").

Consistency, in this order, each refusal one line (:class:`~grokbench.errors.ConfigError`): the bundle's digest; the
benchmark (name, version, file digest); the method (its presets' settings, search space and trials, recomputed);
every run's configuration hash recomputed from its configuration; every run's configuration equal to the one the
benchmark and the method produce for its suite, entry and seed (:mod:`grokbench.config.studies`; under
external-tuning the scoring runs follow from the trials chosen on the bundle's own tuning runs); every track either
absent (pending) or present on all its seeds (and trials); each finished run's summary recomputed from its curves;
the store digest; and each ruleset's scores recomputed from the runs by ``bench report``'s code.

Then ``--sample K`` runs, drawn with a seeded generator, are trained again and compared with their stored curves:
bit for bit when this machine's CPU model and torch version are the bundle's (the threads are set to the run's),
else within :data:`TOLERANCE_EVALS` evaluations (or :data:`TOLERANCE_FRACTION` of the step) of the step at which
test and validation accuracy generalized, with the same status.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from grokbench.config.benchmark import Benchmark, MethodPlan, load_benchmark
from grokbench.config.run import RunConfig, TrainConfig
from grokbench.config.studies import Study, draw_variants, scoring_plan, tuning_plan
from grokbench.errors import ConfigError
from grokbench.plugin.benchmark_file import RULESETS
from grokbench.plugin.registry import Registry
from grokbench.reporting.ruleset_page import collect, runs_digest, score_rows
from grokbench.reporting.studies import FINISHED, choose_trials, outcomes
from grokbench.reporting.submissions import cpu_model, method_ref
from grokbench.storage.bundle import Bundle, Curves, RunRecord, StudyRecord, TemporaryStore, canonical
from grokbench.training.summaries import summarize

#: outside the bundle's CPU model and torch version, a re-run's generalization step may differ from the stored one
#: by this many evaluations ...
TOLERANCE_EVALS = 2
#: ... or by this fraction of the stored step, whichever is larger
TOLERANCE_FRACTION = 0.10


@dataclass
class Rerun:
    run: RunRecord
    exact: bool
    match: bool
    detail: str
    seconds: float


@dataclass
class Verified:
    """What ``bench verify`` checked."""

    method: str
    benchmark: str
    runs: int
    rulesets: list[str]
    reruns: list[Rerun] = field(default_factory=list)
    sample_seed: int = 0


def _label(run: RunRecord) -> str:
    return f"run {run.id} ({run.entry}, seed {run.seed})"


def _first_difference(a: Any, b: Any, prefix: str = "") -> str:
    """The first dotted key at which two configurations differ, with both values."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key == "preset":
                continue
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{prefix}{key}.")
        return prefix.rstrip(".") or "(nothing)"
    return f"{prefix.rstrip('.')} (bundle {a!r}, expected {b!r})"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def check_bundle(bundle: Bundle, registry: Registry, benchmark: str | None = None) -> Benchmark:
    """Every consistency check (the module docstring); ConfigError naming the first mismatch. Returns the
    benchmark the bundle was checked against."""
    if bundle.digest != bundle.content_digest():
        raise ConfigError(
            f"bundle digest {bundle.digest[:16]} does not match its content ({bundle.content_digest()[:16]}): "
            "it was edited after it was written"
        )
    ref = bundle.benchmark
    bench = load_benchmark(benchmark or ref.name, registry)
    if (bench.name, bench.spec.benchmark.version) != (ref.name, ref.version):
        raise ConfigError(
            f"the bundle is of {ref.name} v{ref.version}, not {bench.name} v{bench.spec.benchmark.version}"
        )
    if bench.digest != ref.digest:
        raise ConfigError(
            f"benchmark file digest {ref.digest[:16]} is not that of {bench.name} v{ref.version} here "
            f"({bench.digest[:16]}): the runs were planned by another file"
        )
    method = bundle.method
    mine = method_ref(bench, method.name, registry)
    if [p["settings"] for p in mine.presets] != [p["settings"] for p in method.presets]:
        raise ConfigError(f"method '{method.name}': its preset settings differ from those of the installed plugin")
    if mine.search_space != method.search_space:
        raise ConfigError(f"method '{method.name}': its search space differs from that of the installed plugin")
    if mine.trials != method.trials:
        raise ConfigError(f"method '{method.name}': its trials are not those {bench.name} draws from its space")
    rulesets = [s.ruleset for s in bundle.studies]
    for r in rulesets:
        if r not in RULESETS:
            raise ConfigError(f"unknown ruleset '{r}' (rulesets: {', '.join(RULESETS)})")
    if len(set(rulesets)) != len(rulesets) or not rulesets:
        raise ConfigError("the bundle must hold each ruleset at most once, and at least one")
    ids: set[str] = set()
    for s in bundle.studies:
        keys: set[tuple[str, str, int]] = set()
        for run in s.runs:
            if run.id in ids or (run.suite, run.entry, run.seed) in keys:
                raise ConfigError(f"{_label(run)}: the bundle holds it twice")
            ids.add(run.id)
            keys.add((run.suite, run.entry, run.seed))
            try:
                cfg = RunConfig.model_validate(run.config)
            except ValueError as exc:
                raise ConfigError(f"{_label(run)}: its config is not a valid run configuration ({exc})") from None
            if cfg.hash != run.config_hash:
                raise ConfigError(f"{_label(run)}: config hash {run.config_hash} is not its config's ({cfg.hash})")
            if cfg.seed != run.seed:
                raise ConfigError(f"{_label(run)}: its config has seed {cfg.seed}")
    with TemporaryStore([bundle]) as store:
        frames = []
        for s in bundle.studies:
            frames += _check_study(bundle, s, bench, registry, store)
        if runs_digest(frames) != bundle.store_digest:
            raise ConfigError(
                f"store digest {bundle.store_digest[:16]} is not that of the bundle's runs ({runs_digest(frames)[:16]})"
            )
        results = collect(store, bench, registry, [method.name])
        for s in bundle.studies:
            mine_rows = score_rows([r for r in results if r.ruleset == s.ruleset])
            _check_scores(s, mine_rows)
    return bench


def _check_scores(s: StudyRecord, recomputed: list[dict[str, Any]]) -> None:
    stored = [json.loads(canonical(r)) for r in s.scores]
    again = [json.loads(canonical(r)) for r in recomputed]
    if canonical(stored) == canonical(again):
        return
    if len(stored) != len(again):
        raise ConfigError(f"{s.ruleset}: the bundle has {len(stored)} score rows, its runs give {len(again)}")
    for a, b in zip(stored, again):
        if canonical(a) != canonical(b):
            key = next(k for k in sorted(set(a) | set(b)) if canonical(a.get(k)) != canonical(b.get(k)))
            raise ConfigError(
                f"{s.ruleset}: the score of {a.get('method')} on {a.get('track')} seed {a.get('seed')} does not "
                f"follow from the runs: {key} is {a.get(key)!r} in the bundle, {b.get(key)!r} from its curves"
            )


def _check_study(bundle: Bundle, s: StudyRecord, bench: Benchmark, registry: Registry, store: Any) -> list[Any]:
    method = bundle.method.name
    study = Study(bench, method, s.ruleset, bundle.method.trials if s.ruleset == "external-tuning" else [])
    meta = bench.spec.benchmark
    expected_suites = [study.scoring_suite] + ([study.tuning_suite] if s.ruleset == "external-tuning" else [])
    variant_sets = _variant_sets(s, study.scoring_suite)
    expected_suites += [study.variants_suite(seed) for seed in variant_sets]
    for suite in s.suites:
        if suite.name not in expected_suites:
            raise ConfigError(
                f"{s.ruleset}: suite '{suite.name}' is not one of this study's ({', '.join(expected_suites)})"
            )
    for run in s.runs:
        if run.suite not in expected_suites:
            raise ConfigError(f"{_label(run)}: its suite '{run.suite}' is not one of this study's")
    plans: list[tuple[str, MethodPlan | None]] = []
    if s.ruleset == "external-tuning":
        plans.append((study.tuning_suite, tuning_plan(study, registry)))
        skipped = {name.split("/")[0] for name in tuning_plan(study, registry).not_applicable}
        applicable = [t for t in bench.tracks if t not in skipped]
        chosen, _ = choose_trials(
            outcomes(store, study.tuning_suite), len(study.trials), applicable, len(meta.tuning_seeds or [])
        )
        values = {t: study.trials[k] for t, k in chosen.items()}
        tracks = sorted(chosen, key=bench.tracks.index)
        if tracks:
            plans.append((study.scoring_suite, scoring_plan(study, registry, tracks, values)))
        else:
            plans.append((study.scoring_suite, None))
    else:
        values = {}
        tracks = list(bench.tracks)
        plans.append((study.scoring_suite, scoring_plan(study, registry)))
    for seed, (k, bases) in variant_sets.items():
        drawn = [
            v for v in draw_variants(bench, k, seed) if v.name.split("~")[0] in bases and v.name.split("~")[0] in tracks
        ]
        if drawn:
            plans.append(
                (
                    study.variants_suite(seed),
                    scoring_plan(study, registry, chosen=values, variants=drawn, variant_seed=seed),
                )
            )
    runs = {(r.suite, r.entry, r.seed): r for r in s.runs}
    expected: dict[tuple[str, str, int], str] = {}
    for name, plan in plans:
        for p in plan.suite.runs if plan is not None else []:
            expected[(name, p.label, p.config.seed)] = p.config.hash
            found = runs.get((name, p.label, p.config.seed))
            if found is not None and found.config_hash != p.config.hash:
                raise ConfigError(
                    f"{_label(found)}: its config is not what {bench.name} and '{method}' produce under {s.ruleset}: "
                    f"it differs at {_first_difference(found.config, p.config.model_dump(mode='json'))}"
                )
    for key, run in runs.items():
        if key not in expected:
            why = "no trial chosen on that track" if run.suite == study.scoring_suite and s.ruleset == "external-tuning" else "not in the plan"  # fmt: skip
            raise ConfigError(
                f"{_label(run)}: {bench.name} and '{method}' plan no such run in {run.suite} ({why}): a config the "
                "method could not have produced"
            )
    by_track: dict[tuple[str, str], list[tuple[str, int]]] = {}
    for sname, entry, seed in expected:
        by_track.setdefault((sname, entry.split("/")[0]), []).append((entry, seed))
    for (sname, track), keys in by_track.items():
        have = [k for k in keys if (sname, *k) in runs]
        if have and len(have) < len(keys):
            entry, seed = next(k for k in keys if (sname, *k) not in runs)
            raise ConfigError(
                f"{sname}: track {track} is missing its run {entry}, seed {seed} ({len(have)} of {len(keys)} stored)"
            )
    for run in s.runs:
        if run.status in FINISHED:
            _check_summary(run)
    return [outcomes(store, suite.name) for suite in s.suites]


def _variant_sets(s: StudyRecord, scoring_suite: str) -> dict[int, tuple[int, set[str]]]:
    """The held-out variant sets of a study: per variant seed, how many variants were drawn per track and of which
    tracks (read from the suites' entries, ``TRACK~SEED.I``; the variants themselves are drawn again)."""
    out: dict[int, tuple[int, set[str]]] = {}
    prefix = f"{scoring_suite}/variants-"
    for suite in s.suites:
        if not suite.name.startswith(prefix) or not suite.name[len(prefix) :].isdigit():
            continue
        seed = int(suite.name[len(prefix) :])
        names = [str(e.get("name", "")) for e in suite.spec.get("entries", [])]
        try:
            k = 1 + max(int(n.rsplit(".", 1)[1]) for n in names)
        except (ValueError, IndexError):
            raise ConfigError(f"suite '{suite.name}': its entries are not variants TRACK~SEED.I") from None
        out[seed] = (k, {n.split("~")[0] for n in names})
    return out


def _check_summary(run: RunRecord) -> None:
    records = run.curves.records()
    if run.steps is not None and records and int(records[-1]["step"]) != run.steps:
        raise ConfigError(f"{_label(run)}: {run.steps} steps, but its curves end at step {int(records[-1]['step'])}")
    cfg = TrainConfig.model_validate(run.config.get("train", {}))
    for key, value in summarize(records, cfg).items():
        if key in run.summary and not _same(_plain(run.summary[key]), _plain(value)):
            raise ConfigError(
                f"{_label(run)}: its summary says {key} = {run.summary[key]!r}, its curves give {value!r}"
            )


def _plain(value: Any) -> Any:
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


# ------------------------------------------------------------------ re-runs


def draw_sample(bundle: Bundle, k: int, seed: int) -> list[RunRecord]:
    """``k`` of the bundle's finished runs, drawn with ``random.Random(seed)`` from them sorted by id."""
    finished = sorted((r for s in bundle.studies for r in s.runs if r.status in FINISHED), key=lambda r: r.id)
    return random.Random(seed).sample(finished, min(k, len(finished)))


def _gen_step(curves: Curves, name: str, cfg: TrainConfig) -> float:
    from grokbench.reporting.statistics import generalization_step

    if name not in curves.values:
        return math.nan
    pts = [(s, v) for s, v in zip(curves.steps, curves.values[name]) if v is not None]
    return generalization_step([s for s, _ in pts], [v for _, v in pts], cfg.generalize_threshold, cfg.generalize_evals)


def compare(run: RunRecord, status: str, again: Curves, exact: bool) -> tuple[bool, str]:
    """Whether a re-run's curves match the stored ones: bit for bit (``exact``) or within the tolerance."""
    if status != run.status:
        return False, f"status {status}, stored {run.status}"
    if exact:
        if again.steps != run.curves.steps:
            return False, f"evaluated steps differ ({len(again.steps)} against {len(run.curves.steps)} stored)"
        for name, values in run.curves.values.items():
            mine = again.values.get(name)
            if mine != values:
                i = next((i for i, (a, b) in enumerate(zip(mine or [], values)) if a != b), 0)
                got = mine[i] if mine and i < len(mine) else None
                return False, f"{name} at step {run.curves.steps[i]}: {got!r}, stored {values[i]!r}"
        return True, f"{len(run.curves.steps)} evaluations equal bit for bit"
    cfg = TrainConfig.model_validate(run.config.get("train", {}))
    parts = []
    for name in ("test_acc", "val_acc"):
        a, b = _gen_step(again, name, cfg), _gen_step(run.curves, name, cfg)
        if math.isnan(a) and math.isnan(b):
            continue
        if math.isinf(a) or math.isinf(b):
            if a != b:
                return False, f"{name} generalized at {a}, stored {b}"
            continue
        allowed = max(TOLERANCE_EVALS * cfg.eval_every, TOLERANCE_FRACTION * b)
        if abs(a - b) > allowed:
            return False, f"{name} generalized at step {a:.0f}, stored {b:.0f} (tolerance ±{allowed:.0f})"
        parts.append(f"{name} at {a:.0f} (stored {b:.0f})")
    return True, "within tolerance: " + (", ".join(parts) or "neither generalized")


def batch_of(bundle: Bundle, run: RunRecord) -> list[RunRecord]:
    """The runs ``run`` was trained with as one batched program (itself alone when it was not batched): the runs
    that share its ``batched_seeds`` and ``created_at`` (a program's runs start together), in the bundle's order.
    Empty when they are not all in the bundle (then it is re-trained alone and compared within the tolerance)."""
    size = int(run.environment.get("batched_seeds") or 1)
    if size < 2:
        return [run]
    group = list(
        {
            r.id: r
            for s in bundle.studies
            for r in s.runs
            if r.created_at == run.created_at and int(r.environment.get("batched_seeds") or 1) == size
        }.values()
    )
    return group if len(group) == size else []


def _curves_of(frame: Any) -> Curves:
    import pandas as pd

    return Curves(
        steps=[int(s) for s in frame["step"]] if "step" in frame else [],
        values={
            str(c): [None if (pd.isna(v) or not math.isfinite(float(v))) else float(v) for v in frame[c]]
            for c in frame.columns
            if c != "step"
        },
    )


def rerun(
    bundle: Bundle, runs: list[RunRecord], registry: Registry, echo: Callable[[str], None] = lambda _: None
) -> list[Rerun]:
    """Train ``runs`` again in this process and compare: bit for bit where the CPU model and torch version are the
    bundle's (a run trained in a batched program is trained again in the same program, its batch), else within the
    tolerance."""
    from grokbench.training.programs import train_group
    from grokbench.training.results import _package_versions
    from grokbench.training.threads import set_threads

    torch_here = dict(_package_versions()).get("torch")
    same_machine = cpu_model() == bundle.environment.cpu_model and torch_here == bundle.environment.torch
    out = []
    for run in runs:
        threads = run.environment.get("torch_threads")
        set_threads(int(threads) if threads else None)
        group = batch_of(bundle, run)
        exact = same_machine and bool(group)
        group = group or [run]
        started = time.perf_counter()
        results = train_group(
            [RunConfig.model_validate(r.config) for r in group], registry=registry, notice=lambda _: None
        )
        result = results[[r.id for r in group].index(run.id)]
        ok, detail = compare(run, result.status, _curves_of(result.curves), exact)
        if len(group) > 1:
            detail += f"; trained in its batch of {len(group)}"
        out.append(Rerun(run, exact, ok, detail, time.perf_counter() - started))
        echo(f"  {_label(run)}: {'matches' if ok else 'DIFFERS'}: {detail} ({out[-1].seconds:.1f} s)")
    return out


def verify(
    bundle: Bundle,
    registry: Registry,
    *,
    benchmark: str | None = None,
    sample: int = 0,
    seed: int = 0,
    echo: Callable[[str], None] = lambda _: None,
) -> Verified:
    """Check the bundle (ConfigError on the first mismatch), then re-train ``sample`` runs drawn with ``seed``."""
    bench = check_bundle(bundle, registry, benchmark)
    n = sum(len(s.runs) for s in bundle.studies)
    done = Verified(bundle.method.name, bench.key, n, [s.ruleset for s in bundle.studies], sample_seed=seed)
    echo(
        f"consistent: {bundle.method.name} on {bench.key} ({', '.join(done.rulesets)}), {n} runs: configs, summaries, "
        "store digest and scores recomputed"
    )
    if sample:
        chosen = draw_sample(bundle, sample, seed)
        same = cpu_model() == bundle.environment.cpu_model
        echo(
            f"re-training {len(chosen)} runs drawn with seed {seed} "
            f"({'bit for bit: same CPU model' if same else 'within tolerance: another CPU model'}): "
            + ", ".join(r.id for r in chosen)
        )
        done.reruns = rerun(bundle, chosen, registry, echo)
    return done

"""Programs: one run, or the seeds of a group trained as one batched program that shrinks as members leave it.
Each run's result is assembled here; its :class:`Recorder` writes it as it trains."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from grokbench.config.run import RunConfig
from grokbench.errors import GrokbenchError, describe
from grokbench.plugin.contracts import BatchedModel, GroupInterrupted, Model
from grokbench.plugin.manager import get_registry
from grokbench.plugin.registry import Registry
from grokbench.training import batching
from grokbench.training.batching import batch_blocker
from grokbench.training.building import Prepared, build, prepare, start
from grokbench.training.loop import Member, Pause, TrainOutcome, train_members
from grokbench.training.results import RunResult, environment, failure, last_step, new_run_id, utc_now
from grokbench.training.state import ResumePoint, TrainState
from grokbench.training.summaries import metric_summaries, summarize

if TYPE_CHECKING:
    from grokbench.plugin.registry import Registry
    from grokbench.training.building import Prepared
    from grokbench.training.results import RunResult


class Recorder(Protocol):
    """What records one run while it trains: its row, curves, checkpoints and loggers
    (:class:`grokbench.recording.live.Lifecycle`). Training calls it; it never imports it."""

    resume: ResumePoint | None

    @property
    def prior_curves(self) -> list[dict[str, float]]: ...

    def start(self, prep: Prepared, created_at: str) -> None: ...

    def observe(self, record: dict[str, float]) -> None: ...

    def on_state(self, step: int, snapshot: Callable[[], TrainState]) -> None: ...

    def end(self, result: RunResult, prep: Prepared) -> None: ...

    def restart(self) -> None: ...


class _Progress:
    """A tqdm bar over steps, on stderr: advances every step (steps/s, ETA), shows the last evaluation's
    train/test accuracy, and its last state stays on screen."""

    def __init__(self, total: int, enabled: bool, label: str, initial: int = 0):
        from tqdm.auto import tqdm

        self.enabled = enabled
        self.bar = tqdm(
            total=total, initial=initial, disable=not enabled, file=sys.stderr, desc=label, unit="step", leave=True
        )

    def __call__(self, record: dict[str, float]) -> None:
        self.bar.set_postfix(train=f"{record['train_acc']:.3f}", test=f"{record['test_acc']:.3f}", refresh=False)

    def step(self, done: int) -> None:
        """``done`` steps are trained (called every step: tqdm redraws at most 10 times a second)."""
        if self.enabled:
            self.bar.update(done - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def _result(
    prep: Prepared,
    registry: Registry,
    status: str,
    steps: int,
    message: str | None,
    curves: list,
    wall: float,
    created_at: str,
    traceback: str | None = None,
    **env: Any,
) -> RunResult:
    import pandas as pd  # here, not at import: a run's first step does not wait for it

    summary = summarize(curves, prep.cfg.train)
    known = [e.component for e in registry.entries["metric"].values()]
    summary.update(metric_summaries(curves, summary, prep.metrics, known))
    return RunResult(
        run_id=new_run_id(),
        traceback=traceback,
        config=prep.cfg,
        status=status,
        steps=steps,
        wall_seconds=wall,
        summary=summary,
        curves=pd.DataFrame(curves),
        plugins=prep.plugins,
        message=message,
        created_at=created_at,
        environment={**environment(prep.device), **env},
    )


def train_config(
    cfg: RunConfig,
    *,
    registry: Registry | None = None,
    progress: bool = False,
    on_eval: Callable[[dict[str, float]], None] | None = None,
    lifecycle: Recorder | None = None,
) -> RunResult:
    """Train a resolved configuration in this process and return its result; nothing is saved but what
    ``lifecycle`` writes as the run goes (:mod:`grokbench.recording.live`: live curves, checkpoints, loggers).

    A ConfigError (bad input) propagates before training starts. Any other
    exception in a plugin or in training ends the run with status ``failed``,
    with its reason; a non-finite loss ends it with status ``diverged``. Ctrl-C (or SIGTERM, where it raises
    KeyboardInterrupt) ends it ``interrupted``: recorded by the ``lifecycle`` if any, then
    :class:`RunInterrupted` is raised with the result (its curves so far).
    """
    registry = registry or get_registry()
    return _train([start(cfg, registry)], registry, None, [lifecycle], progress=progress, on_eval=on_eval)[0]


class _BatchFailed(Exception):
    """A batched program raised while training: its seeds still training are trained again one after another;
    ``ended`` holds the results of those that had left it before (stored as finished then), by index."""

    def __init__(self, message: str, ended: dict[int, RunResult]):
        super().__init__(message)
        self.ended = ended


def _train(
    preps: list[Prepared],
    registry: Registry,
    batched: BatchedModel | None,
    lifecycles: Sequence[Recorder | None],
    *,
    progress: bool,
    on_eval: Callable[[dict[str, float]], None] | None = None,
) -> list[RunResult]:
    """Train one run (``batched`` None: its components are built here, so a failure to build is a recorded run)
    or the seeds of a batched program (built), each member through its own ``lifecycle``: live curves,
    checkpoints of its own state, loggers, ``interrupted`` on Ctrl-C/SIGTERM (every member keeps its curves,
    then :class:`RunInterrupted` is raised). A batched program that raises is :class:`_BatchFailed`."""
    first = preps[0]
    resume = [lc.resume.state for lc in lifecycles if lc is not None and lc.resume is not None] or None
    assert resume is None or len(resume) == len(preps), "a program resumes all of its runs, or none"
    label = f"{first.cfg.task.name}/{first.cfg.model.name}" + (f" x{len(preps)}" if batched is not None else "")
    bar = _Progress(first.cfg.train.steps, progress, label, resume[0].step if resume else 0)
    curves: list[list[dict[str, float]]] = [lc.prior_curves if lc else [] for lc in lifecycles]
    outcomes: list[TrainOutcome] = []
    status, message, trace, interrupted = "failed", None, None, False
    finished: dict[int, TrainOutcome] = {}
    ended: dict[int, RunResult] = {}  # members of a batched program ended when they left it
    created_at, started = utc_now(), time.perf_counter()
    program = list(range(len(preps)))  # the members of the program training now (a batched one shrinks)
    share, since = [0.0] * len(preps), started  # each member's wall time in the programs before this one

    def end(i: int, o: TrainOutcome, trace: str | None = None, wall: float | None = None) -> RunResult:
        """Member i's result, recorded by its lifecycle. In a batched program its wall time is its share of the
        programs' time so far (each program's time divided by its size; ``group_wall_seconds``: the wall time
        since the first program started)."""
        wall = time.perf_counter() - started if wall is None else wall
        shared = {"batched_seeds": len(preps), "group_wall_seconds": wall} if batched is not None else {}
        prep, lifecycle = preps[i], lifecycles[i]
        own = share[i] + (started + wall - since) / len(program) if batched is not None else wall
        result = _result(prep, registry, o.status, o.steps, o.message, curves[i], own, created_at, trace, **shared)
        if lifecycle is not None:
            lifecycle.end(result, prep)
        return result

    def finish(status: str, message: str | None, trace: str | None = None) -> list[RunResult]:
        wall = time.perf_counter() - started
        return [
            ended.get(i)
            or end(i, outcomes[i] if outcomes else TrainOutcome(status, last_step(c), message), trace, wall)
            for i, c in enumerate(curves)
        ]

    def on_leave(i: int) -> Callable[[TrainOutcome], None]:
        def leave(outcome: TrainOutcome) -> None:  # stored as finished now: killing the program later cannot undo it
            ended[i] = end(i, outcome)

        return leave

    try:
        if batched is None:
            build(first)
        for prep, lifecycle in zip(preps, lifecycles):
            if lifecycle is not None:
                lifecycle.start(prep, created_at)

        def report(i: int) -> Callable[[dict[str, float]], None]:
            def on_member_eval(record: dict[str, float]) -> None:
                curves[i].append(record)
                bar(record)
                lifecycle = lifecycles[i]
                if lifecycle is not None:
                    lifecycle.observe(record)
                if on_eval is not None:
                    on_eval(record)

            return on_member_eval

        members = [
            Member(
                p.data,
                p.model,
                p.metrics,
                p.cfg.seed,
                report(i),
                p.optimizer,
                p.regularizer,
                on_state=lc.on_state if lc is not None else None,
                on_leave=on_leave(i) if batched is not None else None,
            )
            for i, (p, lc) in enumerate(zip(preps, lifecycles))
        ]
        # a batched program pauses where members have left it and the others go on in a smaller one, from their
        # states there (as a resumed run does): a member that has left costs nothing from then on
        trainable, optimizer, regularizer = _program(preps, batched)
        reached = [TrainOutcome("completed", first.cfg.train.steps) for _ in preps]
        while True:
            pause = Pause() if len(program) > 1 else None
            try:
                got = train_members(
                    task=first.task,
                    members=[members[i] for i in program],
                    trainable=trainable,
                    optimizer=optimizer,
                    regularizer=regularizer,
                    cfg=first.cfg.train,
                    resume=resume,
                    on_step=bar.step,
                    pause=pause,
                )
            except KeyboardInterrupt as exc:  # the members that had left: by their index in the group
                left = getattr(exc, "finished", {})
                exc.finished = {program[j]: o for j, o in left.items()}  # type: ignore[attr-defined]
                raise
            for j, o in zip(program, got):
                reached[j] = o
            if pause is None or pause.step < 0:
                outcomes = reached
                break
            now = time.perf_counter()
            for i in program:
                share[i] += (now - since) / len(program)
            since, program, resume = now, [program[j] for j in pause.active], pause.states
            trainable, optimizer, regularizer = _program([preps[i] for i in program])
    except GrokbenchError:
        raise
    except KeyboardInterrupt as exc:
        status, interrupted = "interrupted", True
        finished = getattr(exc, "finished", {})
    except Exception as exc:  # a plugin or training failure is a recorded run, not a crash
        if batched is not None:
            raise _BatchFailed(describe(exc), ended) from exc
        try:
            message, trace = failure(exc, first.components())
        except BaseException:  # --debug re-raises: the run is still recorded, as failed, with its curves
            finish("failed", describe(exc))
            raise
    finally:
        bar.close()
    if interrupted:  # a member that had already finished (early stop, divergence, stall) keeps its outcome
        outcomes = [
            finished.get(i)
            or TrainOutcome(status, last_step(c), f"interrupted after the evaluation at step {last_step(c)}")
            for i, c in enumerate(curves)
        ]
    results = finish(status, message, trace)
    if interrupted:
        raise RunInterrupted(results[0], results)
    return results


def _program(preps: list[Prepared], batched: BatchedModel | None = None) -> tuple[Model | BatchedModel, Any, Any]:
    """What a program of these runs trains, and with what: one run's own model, optimizer and regularizer; for
    several, their models stacked (``batched``, or stacked here: a part of a program that stacked stacks again)
    and their optimizers and regularizers as one each (the fields on which they differ as ``[G]`` tensors)."""
    first = preps[0]
    if len(preps) == 1 and batched is None:
        return first.model, first.optimizer, first.regularizer
    model = batched if batched is not None else batching.stack([p.model for p in preps])
    assert isinstance(model, BatchedModel), model
    optimizer = batching.stack_components([p.optimizer for p in preps], first.device)
    regularizer = batching.stack_components([p.regularizer for p in preps], first.device)
    return model, optimizer, regularizer


def train_group(
    cfgs: Sequence[RunConfig],
    *,
    registry: Registry | None = None,
    progress: bool = False,
    notice: Callable[[str], None] | None = None,
    lifecycles: Sequence[Recorder | None] | None = None,
) -> list[RunResult]:
    """Train several configurations in this process, one result each, in order; nothing is saved but what
    their ``lifecycles`` write as they go (one per configuration, as :func:`train_config` takes).

    This is the unit of work an executor hands to a worker. Configurations that
    differ only in their seed and batchable hyperparameters train together as one batched program (each
    run's parameters stacked along a leading dimension) when the model supports it
    (see :mod:`grokbench.training.batching`); each result is then what training that run alone gives, within float
    rounding, and each run's lifecycle records it as a run of its own (its curves, checkpoints of its own
    state, its loggers), as finished as soon as it leaves the program (early stop, divergence, stall) while the
    others train on, from the next evaluation step in a smaller program (from their states there, as runs resumed
    from a checkpoint: a member that has left costs no more steps). Its ``wall_seconds`` is its share of the
    programs it was in (each one's wall time divided by its size), and its environment records ``batched_seeds``
    (the number of runs) and ``group_wall_seconds`` (the wall time from the group's start until it ended).
    Otherwise they run one after another, and ``notice`` (default: a line on stderr) is told why.

    Ctrl-C (or SIGTERM, where it raises KeyboardInterrupt) raises :class:`GroupInterrupted` with the runs
    kept: those finished, and those training, ``interrupted`` with their curves so far.
    """
    registry = registry or get_registry()
    notice = notice or _stderr_notice
    lifecycles = list(lifecycles) if lifecycles is not None else [None] * len(cfgs)

    def one_by_one(kept: dict[int, RunResult] | None = None) -> list[RunResult]:
        """Each run in order, but those ``kept`` (already finished in a batched program that failed later)."""
        kept = kept or {}
        results: dict[int, RunResult] = dict(kept)
        for i, (cfg, lc) in enumerate(zip(cfgs, lifecycles)):
            if i in kept:
                continue
            try:
                results[i] = train_config(cfg, registry=registry, progress=progress, lifecycle=lc)
            except RunInterrupted as stop:
                raise GroupInterrupted([*results.values(), *stop.results]) from None
            except KeyboardInterrupt:  # before the run started training: nothing of it to keep
                raise GroupInterrupted(list(results.values())) from None
        return [results[i] for i in range(len(cfgs))]

    if len(cfgs) < 2:
        return one_by_one()
    batched: BatchedModel | str
    try:
        preps = [prepare(cfg, registry) for cfg in cfgs]
        reason = batch_blocker([p.cfg for p in preps], [p.data for p in preps], registry) or _resume_blocker(lifecycles)
        batched = reason if reason else batching.stack([p.model for p in preps])
    except GrokbenchError:
        raise
    except Exception as exc:  # trained one by one below, where the failure is recorded per run
        batched = f"preparing them failed ({describe(exc)})"
    if isinstance(batched, str):
        notice(f"training {len(cfgs)} runs one after another: {batched}")
        return one_by_one()
    try:
        return _train(preps, registry, batched, lifecycles, progress=progress)
    except RunInterrupted as stop:  # every run of the group kept, interrupted with its curves
        raise GroupInterrupted(stop.results) from None
    except _BatchFailed as exc:  # each run still training gets its own outcome, from scratch (its row starts again)
        again = len(cfgs) - len(exc.ended)
        kept = f", keeping the {len(exc.ended)} that had finished before" if exc.ended else ""
        notice(f"batched training failed ({exc}); training {again} runs one after another{kept}")
        for i, lc in enumerate(lifecycles):
            if lc is not None and i not in exc.ended:
                lc.restart()
        return one_by_one(exc.ended)


def _resume_blocker(lifecycles: Sequence[Recorder | None]) -> str | None:
    """Why runs cannot share a program from where their lifecycles start (None: they can): a batched program
    starts all of its runs at one step, from scratch or from checkpoints of that step."""
    steps = {lc.resume.state.step if lc is not None and lc.resume is not None else -1 for lc in lifecycles}
    if len(steps) < 2:
        return None
    starts = ", ".join("from scratch" if step < 0 else f"from step {step}" for step in sorted(steps))
    return f"they start at different points ({starts})"


def _stderr_notice(message: str) -> None:
    print(f"notice: {message}", file=sys.stderr)


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM ended a run (or the seeds of a batched group); ``result`` is what was kept (status
    ``interrupted``), ``results`` every run that was training (the seeds of a batched group)."""

    def __init__(self, result: RunResult, results: Sequence[RunResult] | None = None):
        super().__init__(f"run {result.run_id} interrupted")
        self.result = result
        self.results = list(results) if results is not None else [result]

    def __reduce__(self) -> Any:  # it travels back from worker processes
        return (type(self), (self.result, self.results))

"""Programs: one run, or the seeds of a group trained as one batched program that shrinks as members leave it.
Each run's result is assembled here; its :class:`Recorder` writes it as it trains."""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from grokbench.config.run import RunConfig
from grokbench.errors import GrokbenchError, describe
from grokbench.plugin.contracts import BatchedModel, GroupInterrupted, Model
from grokbench.plugin.registry import Registry
from grokbench.training import batching
from grokbench.training.batching import batch_blocker
from grokbench.training.building import Prepared, build, prepare, start
from grokbench.training.loop import Member, Pause, TrainOutcome, held_streak, train_members
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
    train/test accuracy, and its last state stays on screen. Disabled, it makes no bar at all: a tqdm bar takes
    tqdm's class lock, which a forked suite worker may have inherited held, and would then wait forever."""

    def __init__(self, total: int, enabled: bool, label: str, initial: int = 0):
        self.bar: Any = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, file=sys.stderr, desc=label, unit="step", leave=True)

    def __call__(self, record: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.set_postfix(train=f"{record['train_acc']:.3f}", test=f"{record['test_acc']:.3f}", refresh=False)

    def step(self, done: int) -> None:
        """``done`` steps are trained (called every step: tqdm redraws at most 10 times a second)."""
        if self.bar is not None:
            self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _run_result(
    prep: Prepared,
    registry: Registry,
    outcome: TrainOutcome,
    curves: list,
    wall: float,
    created_at: str,
    traceback: str | None = None,
    cost: Mapping[str, Any] | None = None,
    **env: Any,
) -> RunResult:
    import pandas as pd  # here, not at import: a run's first step does not wait for it

    summary = summarize(curves, prep.cfg.train)
    known = [e.component for e in registry.entries["metric"].values()]
    summary.update(metric_summaries(curves, summary, prep.metrics, known))
    summary.update(cost or {})
    return RunResult(
        run_id=new_run_id(),
        traceback=traceback,
        config=prep.cfg,
        status=outcome.status,
        steps=outcome.steps,
        wall_seconds=wall,
        summary=summary,
        curves=pd.DataFrame(curves),
        plugins=prep.plugins,
        message=outcome.message,
        created_at=created_at,
        environment={**environment(prep.device), **env},
    )


def train_config(
    cfg: RunConfig,
    *,
    registry: Registry,
    progress: bool = False,
    on_eval: Callable[[dict[str, float]], None] | None = None,
    lifecycle: Recorder | None = None,
) -> RunResult:
    """Train a resolved configuration in this process and return its result; nothing is saved but what
    ``lifecycle`` writes as the run goes (:mod:`grokbench.recording.live`).

    A ConfigError propagates before training starts; any other exception ends the run ``failed``, with its
    reason; a non-finite loss ends it ``diverged``. Ctrl-C (or SIGTERM) ends it ``interrupted``, recorded by
    the ``lifecycle``, then raises :class:`RunInterrupted` with the result (its curves so far)."""
    return _train_runs([start(cfg, registry)], registry, None, [lifecycle], progress=progress, on_eval=on_eval)[0]


class _BatchFailed(Exception):
    """A batched program raised while training: its seeds still training are trained again one after another;
    ``ended`` holds the results of those that had left it before (stored as finished then), by index."""

    def __init__(self, message: str, ended: dict[int, RunResult]):
        super().__init__(message)
        self.ended = ended


def _train_runs(
    preps: list[Prepared],
    registry: Registry,
    batched: BatchedModel | None,
    lifecycles: Sequence[Recorder | None],
    *,
    progress: bool,
    on_eval: Callable[[dict[str, float]], None] | None = None,
) -> list[RunResult]:
    """Train one run (``batched`` None: built here, so a failure to build is a recorded run) or the seeds of a
    batched program (built), each recorded by its own lifecycle. Ctrl-C/SIGTERM ends every run ``interrupted``
    with its curves, then raises :class:`RunInterrupted`; a batched program that raises is :class:`_BatchFailed`."""
    runs = _Runs(preps, registry, batched, lifecycles, progress, on_eval)
    status, message, trace = "failed", None, None
    left: dict[int, TrainOutcome] = {}
    try:
        runs.start()
        runs.outcomes = runs.train()
    except GrokbenchError:
        raise
    except KeyboardInterrupt as exc:
        status, left = "interrupted", getattr(exc, "left", {})
    except Exception as exc:  # a plugin or training failure is a recorded run, not a crash
        message, trace = runs.failed(exc)
    finally:
        runs.bar.close()
    if status == "interrupted":
        runs.outcomes = runs.interrupted(left)
    results = runs.finish(status, message, trace)
    if status == "interrupted":
        raise RunInterrupted(results[0], results)
    return results


class _Runs:
    """The runs one :func:`_train_runs` call trains, in a program that shrinks as members leave it: their
    curves, their results as they end, and each one's share of the wall time and of the CPU time."""

    def __init__(
        self,
        preps: list[Prepared],
        registry: Registry,
        batched: BatchedModel | None,
        lifecycles: Sequence[Recorder | None],
        progress: bool,
        on_eval: Callable[[dict[str, float]], None] | None,
    ):
        self.preps, self.registry, self.batched = preps, registry, batched
        self.lifecycles, self.on_eval = lifecycles, on_eval
        first = preps[0]
        resume = [lc.resume.state for lc in lifecycles if lc is not None and lc.resume is not None] or None
        assert resume is None or len(resume) == len(preps), "a program resumes all of its runs, or none"
        self.resume = resume
        label = f"{first.cfg.task.name}/{first.cfg.model.name}" + (f" x{len(preps)}" if batched is not None else "")
        self.bar = _Progress(first.cfg.train.steps, progress, label, resume[0].step if resume else 0)
        self.curves: list[list[dict[str, float]]] = [lc.prior_curves if lc else [] for lc in lifecycles]
        self.outcomes: list[TrainOutcome] = []
        self.ended: dict[int, RunResult] = {}  # members of a batched program ended when they left it
        self.created_at, self.started = utc_now(), time.perf_counter()
        self.program = list(range(len(preps)))  # the members of the program training now
        self.share, self.since = [0.0] * len(preps), self.started  # each one's wall time in earlier programs
        # the process CPU time of the training loop, shared as the wall time is (None: training has not started)
        self.cpu_share: list[float] = [0.0] * len(preps)
        self.cpu_since: float | None = None
        self.first_step = resume[0].step if resume else 0

    def start(self) -> None:
        """Build a single run's components (a batched program's are built), then start every run's record."""
        if self.batched is None:
            build(self.preps[0])
        for prep, lifecycle in zip(self.preps, self.lifecycles):
            if lifecycle is not None:
                lifecycle.start(prep, self.created_at)

    def train(self) -> list[TrainOutcome]:
        """Train the program; where members have left it, the others go on in a smaller one from their states
        there (as a resumed run does), so a member that has left costs nothing more. Every run's outcome."""
        members = [self.member(i) for i in range(len(self.preps))]
        trainable, optimizer, regularizer = _components(self.preps, self.batched)
        self.cpu_since = time.process_time()
        outcomes = [TrainOutcome("completed", self.preps[0].cfg.train.steps) for _ in self.preps]
        resume = self.resume
        while True:
            pause = Pause() if len(self.program) > 1 else None
            reached = self.train_program(
                [members[i] for i in self.program], trainable, optimizer, regularizer, resume, pause
            )
            for i, outcome in zip(self.program, reached):
                outcomes[i] = outcome
            if pause is None or pause.step < 0:
                return outcomes
            self.shrink(pause.active)
            resume = pause.states
            trainable, optimizer, regularizer = _components([self.preps[i] for i in self.program])

    def member(self, i: int) -> Member:
        prep, lifecycle = self.preps[i], self.lifecycles[i]
        return Member(
            prep.data,
            prep.model,
            prep.metrics,
            prep.cfg.seed,
            functools.partial(self.observe, i),
            prep.optimizer,
            prep.regularizer,
            on_state=lifecycle.on_state if lifecycle is not None else None,
            on_leave=functools.partial(self.leave, i) if self.batched is not None else None,
            held=held_streak(self.curves[i], prep.cfg.train),
        )

    def train_program(
        self,
        members: list[Member],
        trainable: Model | BatchedModel,
        optimizer: Any,
        regularizer: Any,
        resume: Sequence[TrainState] | None,
        pause: Pause | None,
    ) -> list[TrainOutcome]:
        """:func:`train_members` on the program now; on Ctrl-C, the members that had left it by their run's index."""
        cfg = self.preps[0].cfg
        try:
            return train_members(
                task=self.preps[0].task,
                members=members,
                trainable=trainable,
                optimizer=optimizer,
                regularizer=regularizer,
                cfg=cfg.train,
                resume=resume,
                on_step=self.bar.step,
                pause=pause,
            )
        except KeyboardInterrupt as exc:
            left = getattr(exc, "left", {})
            exc.left = {self.program[j]: o for j, o in left.items()}  # type: ignore[attr-defined]
            raise

    def shrink(self, active: list[int]) -> None:
        """Go on with the members ``active`` (indices in the program now), each one charged its share so far."""
        now, cpu = time.perf_counter(), time.process_time()
        for i in self.program:
            self.share[i] += (now - self.since) / len(self.program)
            if self.cpu_since is not None:
                self.cpu_share[i] += (cpu - self.cpu_since) / len(self.program)
        self.since, self.cpu_since, self.program = now, cpu, [self.program[j] for j in active]

    def observe(self, i: int, record: dict[str, float]) -> None:
        """Run ``i``'s evaluation record: to its curves, the bar, its lifecycle and ``on_eval``."""
        self.curves[i].append(record)
        self.bar(record)
        lifecycle = self.lifecycles[i]
        if lifecycle is not None:
            lifecycle.observe(record)
        if self.on_eval is not None:
            self.on_eval(record)

    def leave(self, i: int, outcome: TrainOutcome) -> None:
        """Run ``i`` left the program: stored as finished now, so killing the program later cannot undo it."""
        self.ended[i] = self.end(i, outcome)

    def end(
        self,
        i: int,
        outcome: TrainOutcome,
        trace: str | None = None,
        wall: float | None = None,
        cpu: float | None = None,
    ) -> RunResult:
        """Run ``i``'s result, recorded by its lifecycle. In a batched program its wall time is its share of the
        programs' time (each program's time divided by its size); ``group_wall_seconds`` is the time since the
        first one started."""
        wall = time.perf_counter() - self.started if wall is None else wall
        prep, lifecycle, batched = self.preps[i], self.lifecycles[i], self.batched is not None
        shared = {"batched_seeds": len(self.preps), "group_wall_seconds": wall} if batched else {}
        own = self.share[i] + (self.started + wall - self.since) / len(self.program) if batched else wall
        cost = self.cost(i, outcome, time.process_time() if cpu is None else cpu)
        result = _run_result(prep, self.registry, outcome, self.curves[i], own, self.created_at, trace, cost, **shared)
        if lifecycle is not None:
            lifecycle.end(result, prep)
        return result

    def cost(self, i: int, outcome: TrainOutcome, cpu_now: float) -> dict[str, Any]:
        """Run ``i``'s cost for its summary: ``grad_evals``, its steps times its optimizer's
        ``GRAD_EVALS_PER_STEP`` (None for a closed-form model, which takes no steps), and
        ``cpu_seconds_per_step``, the process CPU time (every thread's) of the training loop in this process,
        in a batched program its share (each program's CPU time divided by its size, as the wall time is),
        divided by the steps it trained here (None when it trained none)."""
        entry = self.preps[i].entries.get("optimizer")
        grad_evals = outcome.steps * entry.component.GRAD_EVALS_PER_STEP if entry is not None else None
        trained = outcome.steps - self.first_step
        per_step = None
        if self.cpu_since is not None and trained > 0:
            cpu = self.cpu_share[i] + (cpu_now - self.cpu_since) / len(self.program)
            per_step = cpu / trained
        return {"grad_evals": grad_evals, "cpu_seconds_per_step": per_step}

    def finish(self, status: str, message: str | None, trace: str | None = None) -> list[RunResult]:
        """Every run's result: those that ended on leaving, the others ended now (with ``status`` where no
        outcome was reached)."""
        wall, cpu = time.perf_counter() - self.started, time.process_time()
        return [
            self.ended.get(i)
            or self.end(
                i, self.outcomes[i] if self.outcomes else TrainOutcome(status, last_step(c), message), trace, wall, cpu
            )
            for i, c in enumerate(self.curves)
        ]

    def interrupted(self, left: dict[int, TrainOutcome]) -> list[TrainOutcome]:
        """Outcomes on Ctrl-C: a run that had already left (early stop, divergence, stall) keeps its own."""
        return [
            left.get(i)
            or TrainOutcome("interrupted", last_step(c), f"interrupted after the evaluation at step {last_step(c)}")
            for i, c in enumerate(self.curves)
        ]

    def failed(self, exc: Exception) -> tuple[str, str]:
        """A single run's failure message and traceback; a batched program's failure is :class:`_BatchFailed`.
        Under ``--debug`` the run is recorded as failed, with its curves, and the exception re-raised."""
        if self.batched is not None:
            raise _BatchFailed(describe(exc), self.ended) from exc
        try:
            return failure(exc, self.preps[0].components())
        except BaseException:
            self.finish("failed", describe(exc))
            raise


def _components(preps: list[Prepared], batched: BatchedModel | None = None) -> tuple[Model | BatchedModel, Any, Any]:
    """What a program of these runs trains, and with what: one run's own model, optimizer and regularizer; for
    several, their models stacked (``batched``, or stacked here) and their optimizers and regularizers as one
    each (the fields on which they differ as ``[G]`` tensors)."""
    first = preps[0]
    if len(preps) == 1 and batched is None:
        return first.model, first.optimizer, first.regularizer
    model = batched if batched is not None else batching.stack([p.model for p in preps])
    optimizer = batching.stack_components([p.optimizer for p in preps], first.device)
    regularizer = batching.stack_components([p.regularizer for p in preps], first.device)
    return model, optimizer, regularizer


def train_group(
    cfgs: Sequence[RunConfig],
    *,
    registry: Registry,
    progress: bool = False,
    notice: Callable[[str], None] | None = None,
    lifecycles: Sequence[Recorder | None] | None = None,
) -> list[RunResult]:
    """Train several configurations in this process, one result each, in order; nothing is saved but what
    their ``lifecycles`` write (one per configuration, as :func:`train_config` takes).

    The unit of work an executor hands to a worker. Configurations that differ only in their seed and batchable
    hyperparameters train as one batched program when the model allows it (:mod:`grokbench.training.batching`),
    each result what training that run alone gives, within float rounding, each recorded as a run of its own
    and finished as soon as it leaves the program. Its ``wall_seconds`` is its share of the programs it was in;
    its environment records ``batched_seeds`` and ``group_wall_seconds``. Otherwise they run one after another,
    and ``notice`` (default: a line on stderr) is told why. Ctrl-C (or SIGTERM) raises :class:`GroupInterrupted`
    with the runs kept: those finished, and those training, ``interrupted`` with their curves so far."""
    notice = notice or _stderr_notice
    lifecycles = list(lifecycles) if lifecycles is not None else [None] * len(cfgs)
    if len(cfgs) < 2:
        return _train_each(cfgs, lifecycles, registry, progress)
    preps, batched = _prepare_batch(cfgs, lifecycles, registry)
    if isinstance(batched, str):
        notice(f"training {len(cfgs)} runs one after another: {batched}")
        return _train_each(cfgs, lifecycles, registry, progress)
    try:
        return _train_runs(preps, registry, batched, lifecycles, progress=progress)
    except RunInterrupted as stop:  # every run of the group kept, interrupted with its curves
        raise GroupInterrupted(stop.results) from None
    except _BatchFailed as exc:  # each run still training gets its own outcome, from scratch (its row starts again)
        again = len(cfgs) - len(exc.ended)
        kept = f", keeping the {len(exc.ended)} that had finished before" if exc.ended else ""
        notice(f"batched training failed ({exc}); training {again} runs one after another{kept}")
        for i, lc in enumerate(lifecycles):
            if lc is not None and i not in exc.ended:
                lc.restart()
        return _train_each(cfgs, lifecycles, registry, progress, exc.ended)


def _prepare_batch(
    cfgs: Sequence[RunConfig], lifecycles: Sequence[Recorder | None], registry: Registry
) -> tuple[list[Prepared], BatchedModel | str]:
    """The runs prepared and their batched model, or why they cannot train as one program."""
    try:
        preps = [prepare(cfg, registry) for cfg in cfgs]
        models = [p.model for p in preps]
        reason = (
            batch_blocker([p.cfg for p in preps], [p.data for p in preps], registry)
            or _resume_blocker(lifecycles)
            or batching.stack_blocker(models)
        )
        return preps, reason if reason else batching.stack(models)
    except GrokbenchError:
        raise
    except Exception as exc:  # trained one by one, where the failure is recorded per run
        return [], f"preparing them failed ({describe(exc)})"


def _train_each(
    cfgs: Sequence[RunConfig],
    lifecycles: Sequence[Recorder | None],
    registry: Registry,
    progress: bool,
    kept: dict[int, RunResult] | None = None,
) -> list[RunResult]:
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

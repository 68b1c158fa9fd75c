"""How fast grokbench trains the quadratic network, measured against the GEMM peak and a plain reference loop.

    python benchmarks/train_speed.py [--threads N] [--repeats 3] [--steps 100] [--scaling] [--device cpu]

Prints, for modadd-cls at p = 97, width 512, train fraction 0.5, full-batch
Adam + AdamW decay (the default preset): steps/s of grokbench's trainer (with the
quadratic model's fused C passes, and with its torch path, GROKBENCH_FUSED=0), useful
GFLOP/s counting 6·p·h·n flops per step, the fp32 GEMM peak measured in this
process (square matmul of 2048), their ratio; the same for a reference loop
(nn.Module on dense one-hot inputs, autograd, torch.optim.AdamW) from the
identical initialization, with the largest loss difference over the first 100
steps; the same step jit-compiled in JAX (the bench extra); the step's three GEMMs
alone (its ceiling); 16 seeds of p = 23, width 128 batched versus one after
another, fused and torch path; and the
peak memory (RSS) of the default run in a subprocess. Every figure is the
median of --repeats measurements, interleaved so that other load on the machine
affects both sides of a ratio alike. --scaling adds steps/s for p = 23, 47, 97, 193. On the CPU the
process is pinned to --threads cores (sched_setaffinity), so every side, JAX's thread pool included, gets
the same cores.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from grokbench.config.run import parse_assignments, resolve_config
from grokbench.plugin.manager import get_registry
from grokbench.training.building import prepare as _prepare
from grokbench.training.loop import train
from grokbench.training.programs import train_config, train_group

REGISTRY = get_registry()


def config(p=97, width=512, steps=100, eval_every=None, seed=0, device="cpu", dtype="float32"):
    sets = [f"task.p={p}", f"model.width={width}", f"train.steps={steps}", f"train.eval_every={eval_every or steps}", f"train.device={device}", f"train.dtype={dtype}"]
    return resolve_config(REGISTRY, task="modadd-cls", model="quadratic", overrides=parse_assignments(sets), seed=seed)


def pin_to_cores(threads: int) -> set[int] | None:
    """Pin this process (and every thread it starts from now on: JAX's) to ``threads`` cores, so that "N threads"
    means N cores for every side. XLA's CPU runtime runs a jit-compiled step on a thread pool of its own that
    its flags do not size: unpinned, the JAX step used 1.65 cores of this 2-core machine with --threads 1
    (CPU time over wall time, 2026-12-02) and ran 1.5x faster than pinned to one."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cores = set(sorted(os.sched_getaffinity(0))[:threads])
    os.sched_setaffinity(0, cores)
    return cores


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def gemm_peak(device, size=2048, reps=10):
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * size**3 * reps / (time.perf_counter() - start) / 1e9


@contextlib.contextmanager
def fused(on: bool):
    """The quadratic model's fused passes on (where built) or off (its torch path: GROKBENCH_FUSED=0)."""
    before = os.environ.get("GROKBENCH_FUSED")
    os.environ["GROKBENCH_FUSED"] = "1" if on else "0"
    try:
        yield
    finally:
        if before is None:
            del os.environ["GROKBENCH_FUSED"]
        else:
            os.environ["GROKBENCH_FUSED"] = before


def grokbench_steps_per_second(cfg, losses=None):
    """Steps/s of grokbench's own trainer (evaluation only at the first and last step)."""
    prep = _prepare(cfg, REGISTRY)
    model = prep.model
    if losses is not None:  # record the training loss of every step, for the agreement check
        inner = model.loss_and_grads
        model.loss_and_grads = lambda x, y, task: (lambda out: (losses.append(float(out[0])), out)[1])(inner(x, y, task))
    sync(cfg.train.device)
    start = time.perf_counter()
    train(task=prep.task, data=prep.data, model=model, optimizer=prep.optimizer, regularizer=prep.regularizer, metrics=[], cfg=cfg.train, seed=cfg.seed, on_eval=lambda r: None)
    sync(cfg.train.device)
    return cfg.train.steps / (time.perf_counter() - start), prep


class Reference(torch.nn.Module):
    """The common way: dense one-hot inputs, two bias-free linear layers, x² activation, autograd."""

    def __init__(self, W, V):
        super().__init__()
        self.first = torch.nn.Linear(W.shape[0], W.shape[1], bias=False)
        self.second = torch.nn.Linear(V.shape[0], V.shape[1], bias=False)
        with torch.no_grad():
            self.first.weight.copy_(W.T)
            self.second.weight.copy_(V.T)

    def forward(self, onehot):
        return self.second(self.first(onehot) ** 2)


def reference_steps_per_second(cfg, losses=None):
    prep = _prepare(cfg, REGISTRY)
    p, data, opt_params = prep.data.spec.vocab_size, prep.data, prep.optimizer.params
    net = Reference(prep.model.params_["W"], prep.model.params_["V"])
    onehot = torch.cat([F.one_hot(data.x_train[:, j], p) for j in range(2)], dim=1).to(prep.model.dtype)
    opt = torch.optim.AdamW(net.parameters(), lr=opt_params.lr, betas=(opt_params.beta1, opt_params.beta2), eps=opt_params.eps, weight_decay=prep.regularizer.params.strength)
    sync(cfg.train.device)
    start = time.perf_counter()
    for _ in range(cfg.train.steps):
        loss = F.cross_entropy(net(onehot), data.y_train)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if losses is not None:
            losses.append(loss.item())
    sync(cfg.train.device)
    return cfg.train.steps / (time.perf_counter() - start)


def jax_step(prep, threads):
    """The same full-batch step (gathered rows, z², cross-entropy, Adam with decoupled decay) written in JAX and
    jit-compiled, with its parameters donated so that XLA updates them in place; ``None`` without JAX (the
    ``bench`` extra). Returns a function running k steps and waiting for the result."""
    import os

    if threads == 1:  # must precede JAX's first import
        os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    jax.config.update("jax_platforms", "cpu")
    o, wd = prep.optimizer.params, prep.regularizer.params.strength
    lr, b1, b2, eps = o.lr, o.beta1, o.beta2, o.eps
    p = prep.data.spec.vocab_size
    idx = jnp.asarray((prep.data.x_train + torch.tensor([0, p])).numpy())
    y = jnp.asarray(prep.data.y_train.numpy())

    def loss(params):
        W, V = params
        z = W[idx[:, 0]] + W[idx[:, 1]]
        logp = jax.nn.log_softmax((z * z) @ V)
        return -jnp.take_along_axis(logp, y[:, None], 1).mean()

    @functools.partial(jax.jit, donate_argnums=(0, 1, 2))
    def step(params, m, v, t):
        grads = jax.grad(loss)(params)
        t = t + 1
        m = [b1 * a + (1 - b1) * g for a, g in zip(m, grads)]
        v = [b2 * a + (1 - b2) * g * g for a, g in zip(v, grads)]
        c1, c2 = 1 - b1**t, 1 - b2**t
        params = [q * (1 - lr * wd) - (lr / c1) * a / (jnp.sqrt(b / c2) + eps) for q, a, b in zip(params, m, v)]
        return params, m, v, t

    state = [[jnp.asarray(prep.model.params_[k].numpy()) for k in ("W", "V")]]
    state += [[jnp.zeros_like(a) for a in state[0]], [jnp.zeros_like(a) for a in state[0]], jnp.float32(0)]

    def run(k):
        nonlocal state
        for _ in range(k):
            state = list(step(*state))
        jax.block_until_ready(state[0])

    run(2)  # compile
    return run


def gemm_ceiling(S, n, h, p, device, repeats=20):
    """Steps/s of the three (batched) GEMMs of a step alone, on random tensors of the step's shapes: what a
    step would reach if the gathers, the square, the loss, the scatter and the optimizer cost nothing."""
    act, V, g = (torch.randn(S, *shape, device=device) for shape in ((n, h), (h, p), (n, p)))
    out, grad_V, grad_z = torch.empty(S, n, p, device=device), torch.empty(S, h, p, device=device), torch.empty(S, n, h, device=device)

    def step():
        torch.bmm(act, V, out=out)
        torch.bmm(act.transpose(1, 2), g, out=grad_V)
        torch.bmm(g, V.transpose(1, 2), out=grad_z)

    step()
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    sync(device)
    return repeats / (time.perf_counter() - start)


def multi_seed(device, seeds=16, steps=300):
    cfgs = [config(p=23, width=128, steps=steps, eval_every=50, seed=s, device=device) for s in range(seeds)]
    start = time.perf_counter()
    train_group(cfgs, registry=REGISTRY, notice=print)
    batched = time.perf_counter() - start
    start = time.perf_counter()
    for cfg in cfgs:
        train_config(cfg, registry=REGISTRY)
    sequential = time.perf_counter() - start
    return seeds * steps / batched, seeds * steps / sequential


def peak_memory_mb():
    """Peak resident memory of the default run (200 steps) in a fresh process. Linux's VmHWM, the high-water mark
    of the process's own memory: ``ru_maxrss`` would also count the parent's resident memory at the fork, which
    exec carries over (this process, after the JAX and reference runs, made it read 785-815 MB for a run of
    about 400 MB). ``ru_maxrss`` only where there is no /proc."""
    code = """
import os, resource, grokbench
grokbench.run('modadd-cls', 'quadratic', overrides=['train.steps=200'])
if os.path.exists('/proc/self/status'):  # kB
    print(next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM:')))
else:
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1]) / 1024


def fused_built() -> bool:
    from grokbench_plugins.models import fused_quadratic

    return fused_quadratic.enabled()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--scaling", action="store_true", help="also steps/s for p = 23, 47, 97, 193 (width 512)")
    parser.add_argument("--skip-multi-seed", action="store_true")
    parser.add_argument("--skip-memory", action="store_true", help="no peak-memory run (a subprocess with torch's default threads)")
    parser.add_argument("--skip-jax", action="store_true", help="no JAX comparison (it needs the bench extra; CPU only)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cores = pin_to_cores(args.threads) if args.device == "cpu" else None
    cfg = config(steps=args.steps, device=args.device)
    p, h = 97, 512
    n = len(_prepare(cfg, REGISTRY).data.x_train)
    flops = 6 * p * h * n
    print(f"torch {torch.__version__}, device {args.device}, {args.threads} thread(s); p={p}, width={h}, n={n}: {flops / 1e9:.3f} GFLOP per step")
    print(f"load average {' '.join(open('/proc/loadavg').read().split()[:3]) if os.path.exists('/proc/loadavg') else 'unknown'}; fused step built: {fused_built()}; "
          f"process pinned to cores {sorted(cores) if cores else 'none (no sched_setaffinity)'}")

    # the two loss curves over the first 100 steps, from the same initialization
    ours, theirs = [], []
    grokbench_steps_per_second(config(steps=100, device=args.device), losses=ours)
    reference_steps_per_second(config(steps=100, device=args.device), losses=theirs)
    gap = max(abs(a - b) / abs(b) for a, b in zip(ours, theirs))
    print(f"loss curves, first 100 steps: grokbench {ours[0]:.6f} -> {ours[-1]:.6f}, reference {theirs[0]:.6f} -> {theirs[-1]:.6f}, largest relative difference {gap:.2e}")

    jax_run = jax_step(_prepare(cfg, REGISTRY), args.threads) if args.device == "cpu" and not args.skip_jax else None
    rows = {"peak": [], "fast": [], "torch": [], "ref": [], "ceiling": [], "jax": []}
    for _ in range(args.repeats):
        rows["peak"].append(gemm_peak(args.device))
        rows["ceiling"].append(gemm_ceiling(1, n, h, p, args.device))
        rows["fast"].append(grokbench_steps_per_second(cfg)[0])
        with fused(False):
            rows["torch"].append(grokbench_steps_per_second(cfg)[0])
        rows["ref"].append(reference_steps_per_second(cfg))
        if jax_run is not None:
            start = time.perf_counter()
            jax_run(args.steps)
            rows["jax"].append(args.steps / (time.perf_counter() - start))
    med = {k: statistics.median(v) for k, v in rows.items() if v}
    ratio_fast = [f * flops / 1e9 / pk for f, pk in zip(rows["fast"], rows["peak"])]
    ratio_ref = [r * flops / 1e9 / pk for r, pk in zip(rows["ref"], rows["peak"])]
    speedup = [f / r for f, r in zip(rows["fast"], rows["ref"])]
    print(f"fp32 GEMM peak (2048² matmul)      {med['peak']:8.1f} GFLOP/s")
    print(f"grokbench trainer                  {med['fast']:8.1f} steps/s  {med['fast'] * flops / 1e9:8.1f} GFLOP/s  {statistics.median(ratio_fast):6.1%} of peak")
    vs_torch = [f / t for f, t in zip(rows["fast"], rows["torch"])]
    print(f"  its torch path (GROKBENCH_FUSED=0) {med['torch']:8.1f} steps/s: the fused step is {statistics.median(vs_torch):.2f}x it "
          f"(each repeat: {', '.join(f'{r:.2f}' for r in vs_torch)}){'' if fused_built() else '  [the fused extension is not built: both are the torch path]'}")
    print(f"reference loop (one-hot, autograd) {med['ref']:8.1f} steps/s  {med['ref'] * flops / 1e9:8.1f} GFLOP/s  {statistics.median(ratio_ref):6.1%} of peak")
    print(f"speedup over the reference         {statistics.median(speedup):8.2f}x   (each repeat: {', '.join(f'{s:.2f}' for s in speedup)})")
    ceiling = [c / r for c, r in zip(rows["ceiling"], rows["ref"])]
    print(f"the step's three GEMMs alone       {med['ceiling']:8.1f} steps/s  {med['ceiling'] * flops / 1e9:8.1f} GFLOP/s  "
          f"{statistics.median(c * flops / 1e9 / pk for c, pk in zip(rows['ceiling'], rows['peak'])):6.1%} of peak: "
          f"grokbench runs at {statistics.median(f / c for f, c in zip(rows['fast'], rows['ceiling'])):.1%} of it "
          f"(each repeat: {', '.join(f'{f / c:.1%}' for f, c in zip(rows['fast'], rows['ceiling']))}) "
          f"(torch path {statistics.median(t / c for t, c in zip(rows['torch'], rows['ceiling'])):.0%}); "
          f"a step of nothing but these GEMMs would be {statistics.median(ceiling):.2f}x the reference")
    if rows["jax"]:
        vs_jax = [f / j for f, j in zip(rows["fast"], rows["jax"])]
        torch_vs_jax = statistics.median(t / j for t, j in zip(rows["torch"], rows["jax"]))
        print(f"JAX, jit-compiled, same step       {statistics.median(rows['jax']):8.1f} steps/s: grokbench is {statistics.median(vs_jax):.2f}x it "
              f"(each repeat: {', '.join(f'{r:.2f}' for r in vs_jax)}; torch path {torch_vs_jax:.2f}x)")
    elif args.device == "cpu" and not args.skip_jax:
        print("JAX comparison skipped: jax is not installed (pip install -e '.[bench]')")

    if not args.skip_multi_seed:
        runs, torch_runs = [], []
        for _ in range(args.repeats):
            runs.append(multi_seed(args.device))
            with fused(False):
                torch_runs.append(multi_seed(args.device))
        for label, rs in (("", runs), (" (torch path)", torch_runs)):
            gains = [b / s for b, s in rs]
            b, s = statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs)
            print(f"16 seeds, p=23, width 128{label}: batched {b:.0f} seed-steps/s, one after another {s:.0f} seed-steps/s: "
                  f"{statistics.median(gains):.2f}x (each repeat: {', '.join(f'{g:.2f}' for g in gains)})")
        print(f"  fused against the torch path: batched {statistics.median(a[0] / t[0] for a, t in zip(runs, torch_runs)):.2f}x, "
              f"one after another {statistics.median(a[1] / t[1] for a, t in zip(runs, torch_runs)):.2f}x")
        n23 = len(_prepare(config(p=23, width=128), REGISTRY).data.x_train)
        bound = statistics.median(16 * gemm_ceiling(16, n23, 128, 23, args.device, repeats=200) / r[1] for r in runs)
        print(f"  the 16 seeds' batched GEMMs alone would be {bound:.1f}x one after another (the ceiling of batching here)")

    if args.skip_memory:
        pass
    elif args.device == "cpu":
        print(f"peak memory (RSS) of the default run: {peak_memory_mb():.0f} MB")
    else:
        print(f"peak CUDA memory in this process: {torch.cuda.max_memory_allocated() / 2**20:.0f} MB")

    if args.scaling:
        print("p     n       steps/s   GFLOP/s   % of peak (width 512)")
        for q in (23, 47, 97, 193):
            c = config(p=q, steps=max(10, args.steps * 97 // q // 4) if q > 97 else args.steps, device=args.device)
            m = len(_prepare(c, REGISTRY).data.x_train)
            rates, peaks = [], []
            for _ in range(args.repeats):
                peaks.append(gemm_peak(args.device))
                rates.append(grokbench_steps_per_second(c)[0])
            rate, gf = statistics.median(rates), statistics.median(rates) * 6 * q * 512 * m / 1e9
            print(f"{q:<5} {m:<7} {rate:8.1f} {gf:9.1f} {gf / statistics.median(peaks):9.1%}")


if __name__ == "__main__":
    main()

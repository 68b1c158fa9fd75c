"""One-shot check for a machine with a GPU: the same code trains on CUDA, agrees with the CPU, and how fast.

    python benchmarks/cuda_check.py            # exits 0 with "skipped" when torch sees no CUDA device

1. The default config (p = 97, width 512), 300 steps, on CUDA in float32 and on
   the CPU in float64 from the same seed: train and test loss/accuracy at every
   evaluation must agree (losses within 2 % relative, accuracies within 0.02).
2. Four seeds batched on CUDA (float64) equal each seed alone on CUDA (losses to 1e-6 relative).
3. The transformer (preset laptop, 200 steps) on CUDA in float32 agrees with the CPU in float64 (losses within 2 %).
4. Steps/s of one run on CUDA and of 16 seeds (p = 23, width 128) batched vs one after another,
   and the fp32 GEMM peak, via benchmarks/train_speed.py's helpers.
"""

from __future__ import annotations

import sys

import torch

if not torch.cuda.is_available():
    print("skipped: torch sees no CUDA device")
    sys.exit(0)

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from train_speed import REGISTRY, config, gemm_peak, grokbench_steps_per_second, multi_seed  # noqa: E402

from grokbench.training.programs import train_config, train_group  # noqa: E402

failures = []


def check(ok, message):
    print(("ok    " if ok else "FAIL  ") + message)
    if not ok:
        failures.append(message)


cuda = train_config(config(steps=300, eval_every=50, device="cuda"), registry=REGISTRY)
cpu = train_config(config(steps=300, eval_every=50, device="cpu", dtype="float64"), registry=REGISTRY)
check(cuda.status == cpu.status == "completed", f"statuses {cuda.status} / {cpu.status} ({cuda.message or cpu.message})")
for name in ("train_loss", "test_loss"):
    rel = ((cuda.curves[name] - cpu.curves[name]).abs() / cpu.curves[name].abs()).max()
    check(rel < 0.02, f"{name}: CUDA float32 vs CPU float64, largest relative difference {rel:.2e}")
for name in ("train_acc", "test_acc"):
    diff = (cuda.curves[name] - cpu.curves[name]).abs().max()
    check(diff <= 0.02, f"{name}: largest difference {diff:.4f}")

cfgs = [config(p=23, width=128, steps=200, eval_every=50, seed=s, device="cuda", dtype="float64") for s in range(4)]
batched, alone = train_group(cfgs, registry=REGISTRY, notice=print), [train_config(c, registry=REGISTRY) for c in cfgs]
check(all(r.environment.get("batched_seeds") == 4 for r in batched), "4 seeds trained as one batched program on CUDA")
# index_add_ on CUDA sums in a nondeterministic order, so runs agree to rounding, not bit for bit
gap = max(((b.curves[c] - a.curves[c]).abs() / a.curves[c].abs()).max() for b, a in zip(batched, alone) for c in ("train_loss", "test_loss"))
check(gap < 1e-6, f"batched seeds equal each seed alone: largest relative loss difference {gap:.2e}")
acc = max((b.curves[c] - a.curves[c]).abs().max() for b, a in zip(batched, alone) for c in ("train_acc", "test_acc"))
check(acc <= 0.01, f"batched seeds equal each seed alone: largest accuracy difference {acc:.4f}")

def transformer(device, dtype):
    from grokbench.config.run import parse_assignments, resolve_config
    from grokbench.plugin.manager import get_registry

    sets = parse_assignments(["train.steps=200", "train.eval_every=50", f"train.device={device}", f"train.dtype={dtype}"])
    return train_config(resolve_config(get_registry(), task="modadd-cls", model="transformer", preset="laptop", overrides=sets), registry=REGISTRY)


t_cuda, t_cpu = transformer("cuda", "float32"), transformer("cpu", "float64")
gap = max(((t_cuda.curves[c] - t_cpu.curves[c]).abs() / t_cpu.curves[c].abs()).max() for c in ("train_loss", "test_loss"))
check(t_cuda.status == "completed" and gap < 0.02, f"transformer: CUDA float32 vs CPU float64, largest relative loss difference {gap:.2e}")

torch.cuda.reset_peak_memory_stats()
rate, _ = grokbench_steps_per_second(config(steps=500, device="cuda"))
flops = 6 * 97 * 512 * 4704
peak = gemm_peak("cuda", size=4096, reps=20)
print(f"default run on {torch.cuda.get_device_name()}: {rate:.0f} steps/s, {rate * flops / 1e9:.0f} GFLOP/s useful, "
      f"fp32 GEMM peak {peak:.0f} GFLOP/s ({rate * flops / 1e9 / peak:.1%}), peak memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MB")
b, s = multi_seed("cuda")
print(f"16 seeds p=23 width 128 on CUDA: batched {b:.0f} seed-steps/s, one after another {s:.0f}: {b / s:.1f}x")
print("all checks passed" if not failures else f"{len(failures)} check(s) failed")
sys.exit(1 if failures else 0)

"""What train.stop_on_stall and train.flush_denormal change on one run of the `paper` classification preset (seed 0).

The stall is watched without stopping the run, so one run gives: the step where stop_on_stall would end it and
the CPU seconds spent up to there, the CPU seconds of the whole run, its outcome, and whether every evaluation
after the stall is identical (it must be). Usage (docs/paper.md, "Stalled runs"):

    python benchmarks/stall_flush.py UNUSED FLUSH(0/1) '{"task": {"p": 17}, "regularizer": {"name": "none"}}'

Prints the outcome (JSON), the stall, the identity check, then (step, CPU s, train loss, test acc) per evaluation.
"""
import json
import time

import torch

torch.set_num_threads(1)
from grokbench.api import run
from grokbench.training import stalls

# watch for stalls without stopping: the step where stop_on_stall would end the run, and the records after it
first_stall = []
_observe = stalls.StallWatch.observe
def observe(self, step, state, grads):
    reason = _observe(self, step, state, grads)
    if reason and not first_stall:
        first_stall.append((step, reason, round(time.process_time() - t0, 2)))
    return None
stalls.StallWatch.observe = observe
import argparse  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("unused", help="ignored: the stall is always watched, never stopped at")
parser.add_argument("flush", type=int, choices=[0, 1], help="train.flush_denormal off (0) or on (1)")
parser.add_argument("overrides", nargs="?", default="{}", help="JSON config overrides, as in the usage line")
args = parser.parse_args()
stall, flush = False, bool(args.flush)
extra = json.loads(args.overrides)
marks = []
t0 = time.process_time()
over = {**extra, "train": {**extra.get("train", {}), "stop_on_stall": True, "flush_denormal": flush}, "metrics": {"ntk_drift": True, "margin": True}}
r = run("modadd-cls", "quadratic", preset="paper", overrides=over, on_eval=lambda rec: marks.append((int(rec["step"]), round(time.process_time() - t0, 2), rec["train_loss"], rec["test_acc"])))
s = r.summary
print(json.dumps({"stall": stall, "flush": flush, "extra": extra, "status": r.status, "steps": r.steps, "message": r.message, "cpu_s": round(time.process_time() - t0, 2),
                  "wall_s": round(r.wall_seconds, 1), **{k: s[k] for k in ("t_memorize", "t_generalize", "best_test_acc", "final_test_acc", "final_train_acc", "final_train_loss", "ntk_drift_at_memorize", "margin_final")}}))
print(json.dumps({"first_stall": first_stall}))
if first_stall:
    at = int(first_stall[0][1].split()[3].rstrip(":"))
    after = r.curves[r.curves["step"] >= at].drop(columns="step")
    print(json.dumps({"records_after_stall_identical": bool((after.nunique(dropna=False) == 1).all()), "evals_after": len(after)}))
print(json.dumps(marks))

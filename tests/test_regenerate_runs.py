"""docs/regenerate.py's run table: one row per run of a suite (the per-seed numbers the verdicts quote), checked."""

import csv
import importlib.util
import io
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("regenerate", ROOT / "docs" / "regenerate.py")
regenerate = importlib.util.module_from_spec(spec)
spec.loader.exec_module(regenerate)

TINY = """
[suite]
name = "tiny"
seeds = [1, 0]

[[entries]]
name = "net"
task = "modadd-cls"
model = "quadratic"
set.task = { p = 11, train_fraction = 0.6 }
set.model.width = 16
set.train = { steps = 40, eval_every = 20 }
"""


def test_the_run_table_has_each_seed_and_no_machine_column_and_check_compares_it(tmp_path, capsys):
    (tmp_path / "tiny.toml").write_text(TINY)
    args = ["--stores", str(tmp_path / "stores"), "--docs", str(tmp_path / "docs"), "--reports", str(tmp_path / "r")]
    (tmp_path / "docs").mkdir()
    assert regenerate.main([str(tmp_path / "tiny.toml"), *args]) == 0
    digest_line = [line for line in capsys.readouterr().err.splitlines() if line.startswith("tiny: ")]
    assert digest_line and digest_line[0].startswith("tiny: tiny.db, runs table sha256 ")
    table = tmp_path / "r" / "tiny" / "runs.csv"
    rows = list(csv.DictReader(io.StringIO(table.read_text())))
    assert [(r["entry"], r["seed"], r["status"], r["steps"]) for r in rows] == [
        ("net", "0", "completed", "40"),
        ("net", "1", "completed", "40"),
    ]
    assert list(rows[0])[:6] == ["entry", "seed", "status", "steps", "t_memorize", "t_generalize"]
    for machine in ("id", "wall_seconds", "environment", "created_at", "host", "config"):
        assert machine not in rows[0]
    assert 0.0 <= float(rows[0]["final_test_acc"]) <= 1.0 and rows[0]["final_test_acc"] != rows[1]["final_test_acc"]
    # nothing trained again, same table; a committed number the runs do not give is named with its run
    assert regenerate.main([str(tmp_path / "tiny.toml"), *args, "--check"]) == 0
    rows[1]["final_test_acc"] = "0.123"
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    table.write_text(out.getvalue())
    capsys.readouterr()
    assert regenerate.main([str(tmp_path / "tiny.toml"), *args, "--check"]) == 1
    assert "tiny: net seed 1 final_test_acc: 0.123 committed," in capsys.readouterr().err

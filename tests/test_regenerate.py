"""docs/regenerate.py: suites re-run (resumable), leaderboards and the docs' figures rewritten, --check compares."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("regenerate", ROOT / "docs" / "regenerate.py")
regenerate = importlib.util.module_from_spec(spec)
spec.loader.exec_module(regenerate)

TINY = """
[suite]
name = "tiny"
seeds = [0]

[[entries]]
name = "frac"
task = "modadd-cls"
model = "quadratic"
set.task.p = 11
set.model.width = 16
set.train = { steps = 40, eval_every = 20 }
grid.task.train_fraction = [0.4, 0.6]
"""


@pytest.fixture
def layout(tmp_path):
    (tmp_path / "tiny.toml").write_text(TINY)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "page.md").write_text("![sweep](figures/tiny-sweep-modadd-cls-task.train_fraction.png)\n")
    args = ["--stores", str(tmp_path / "stores"), "--docs", str(docs), "--reports", str(tmp_path / "reports")]
    return tmp_path, docs, args


def test_one_command_rebuilds_figures_and_leaderboards_and_checks_them(layout, capsys):
    tmp, docs, args = layout
    assert regenerate.main([str(tmp / "tiny.toml"), *args]) == 0
    figure = docs / "figures" / "tiny-sweep-modadd-cls-task.train_fraction.png"
    assert figure.read_bytes()[:4] == b"\x89PNG"
    board = tmp / "reports" / "tiny" / "leaderboard.csv"
    assert "frac[task.train_fraction=0.6]" in board.read_text()
    assert (tmp / "reports" / "tiny" / "leaderboard.md").exists()
    # resumable: the second pass trains nothing (same run ids) and the check finds the committed tables
    ids = {r for r in _ids(tmp)}
    assert regenerate.main([str(tmp / "tiny.toml"), *args, "--check"]) == 0
    assert {r for r in _ids(tmp)} == ids and len(ids) == 2
    # a committed number that the runs do not give is reported
    board.write_text(board.read_text().replace("frac[task.train_fraction=0.6],0.6,tiny,1,", "frac[task.train_fraction=0.6],0.6,tiny,2,"))
    # and so is a figure the docs reference but the report does not draw
    (docs / "other.md").write_text("![x](figures/tiny-no-such-plot.png)\n")
    capsys.readouterr()
    assert regenerate.main([str(tmp / "tiny.toml"), *args, "--check"]) == 1
    err = capsys.readouterr().err
    assert "tiny: frac[task.train_fraction=0.6] seeds: 2 committed, 1 now" in err
    assert "figures/tiny-no-such-plot.png, which the report does not draw" in err


def _ids(tmp):
    import sqlite3

    with sqlite3.connect(tmp / "stores" / "tiny.db") as db:
        return [r[0] for r in db.execute("SELECT id FROM runs")]


def test_a_figure_belongs_to_the_longest_suite_name_it_starts_with():
    names = {"paper", "paper-mini", "scaling"}
    assert regenerate.owner("paper-mini-test-acc.png", names) == "paper-mini"
    assert regenerate.owner("paper-curves-x.png", names) == "paper"
    assert regenerate.owner("scaling-modadd-cls.png", names) == "scaling"
    assert regenerate.owner("other.png", names) is None



def test_check_and_no_train_train_nothing_and_name_what_nothing_rebuilds(layout, capsys):
    tmp, docs, args = layout
    # no store yet: nothing is trained or created; the suite is named, and the figure the docs want from it is an error
    for mode in ("--check", "--no-train"):
        assert regenerate.main([str(tmp / "tiny.toml"), *args, mode]) == 1
        err = capsys.readouterr().err
        assert "tiny: no store at" in err and "tiny-sweep-modadd-cls-task.train_fraction.png, and the suite has no store" in err
    assert not (tmp / "stores").exists() and not (docs / "figures").exists()
    # trained once; a grid point added later is not trained by --no-train, which reports the store as it is,
    # and a figure no page references is an error
    assert regenerate.main([str(tmp / "tiny.toml"), *args]) == 0
    (tmp / "tiny.toml").write_text(TINY.replace("[0.4, 0.6]", "[0.4, 0.6, 0.8]"))
    (docs / "figures" / "tiny-old-name.png").write_bytes(b"\x89PNG")
    capsys.readouterr()
    assert regenerate.main([str(tmp / "tiny.toml"), *args, "--no-train"]) == 1
    assert "docs/figures/tiny-old-name.png: no page references it" in capsys.readouterr().err
    assert len(_ids(tmp)) == 2 and "train_fraction=0.8" not in (tmp / "reports" / "tiny" / "leaderboard.csv").read_text()

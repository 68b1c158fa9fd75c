"""A store moves, copies and renames with its folders: every path it records is relative to it, it reads only its
own files, and each checkpoint is verified (digest, run id, config hash) before it is resumed. Real SQLite files and
real ``grokbench`` processes."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
import torch

from grokbench.api import resume_run, run
from grokbench.errors import ConfigError
from grokbench.recording import checkpoints
from grokbench.storage.store import SCHEMA_VERSION, Store

COMMON = [
    "task.p=11",
    "model.width=32",
    "train.eval_every=30",
    "train.dtype=float64",
    "train.batch_size=16",
    "task.train_fraction=0.6",
    "train.checkpoint_every=2",
]


def grokbench(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "grokbench", *map(str, args)], capture_output=True, text=True, timeout=600
    )


def refused(proc: subprocess.CompletedProcess[str], message: str) -> None:
    """Exit 2 with one line on stderr that says ``message``."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], (proc.returncode, proc.stderr)


@pytest.fixture(scope="module")
def origin(tmp_path_factory):
    """A folder holding ``s.db`` (run A to 200 steps, run B of another lr to 200 steps, with their checkpoints) and
    ``whole.db`` (A's configuration trained to 400 steps in one go)."""
    from grokbench.plugin.manager import get_registry

    registry, folder = get_registry(), tmp_path_factory.mktemp("origin")
    torch.set_num_threads(1)
    opts = {"optimizer": "adam", "registry": registry}
    whole = run("modadd-cls", "quadratic", overrides=COMMON + ["optimizer.lr=0.01", "train.steps=400"], store=folder / "whole.db", **opts)
    a = run("modadd-cls", "quadratic", overrides=COMMON + ["optimizer.lr=0.01", "train.steps=200"], store=folder / "s.db", **opts)
    b = run("modadd-cls", "quadratic", overrides=COMMON + ["optimizer.lr=0.02", "train.steps=200"], store=folder / "s.db", **opts)
    return {"folder": folder, "a": a.run_id, "b": b.run_id, "whole": Store(folder / "whole.db").curves(whole.run_id)}


@pytest.fixture
def original(origin, tmp_path):
    """This test's own copy of the origin folder: the store the test copies, damages or moves."""
    shutil.copytree(origin["folder"], tmp_path / "orig")
    return tmp_path / "orig" / "s.db"


def ckpt_file(store: Path, run_id: str, step: int) -> Path:
    return Path(f"{store}.checkpoints") / run_id / f"step-{step}.safetensors"


def assert_bitwise_whole(store: Path, run_id: str, whole) -> None:
    curves = Store(store).curves(run_id)
    assert list(curves["step"]) == list(whole["step"]) and list(curves.columns) == list(whole.columns)
    for name in whole.columns:
        assert curves[name].tolist() == whole[name].tolist(), name  # bitwise equal, not close


def recorded_paths(store: Path) -> list[str]:
    with closing(sqlite3.connect(store)) as conn, conn:
        return [r[0] for r in conn.execute("SELECT path FROM checkpoints ORDER BY run_id, step")]


# ------------------------------------------------------------------ copy, move, rename: each resumes from its own files


@pytest.mark.parametrize("how", ["copied by hand", "store copy", "store copy --move", "renamed by hand"])
def test_a_copied_moved_or_renamed_store_resumes_bitwise_from_its_own_files(origin, original, tmp_path, how):
    """After the copy, the original's files are damaged (garbage), swapped (another run's state in their place) or
    gone: the copy reads its own files only, so it resumes 200 -> 400 bitwise equal to 400 steps in one go."""
    a, b = origin["a"], origin["b"]
    assert all(not p.startswith("/") for p in recorded_paths(original))  # relative to the store
    if how == "copied by hand":
        shutil.copytree(original.parent, tmp_path / "copy")
        store = tmp_path / "copy" / "s.db"
        for path in Path(f"{original}.checkpoints").rglob("*.safetensors"):
            path.write_bytes(b"garbage" * 100)  # the original damaged
    elif how == "store copy":
        store = tmp_path / "elsewhere" / "t.db"
        store.parent.mkdir()
        done = grokbench("store", "copy", original, store)
        assert done.returncode == 0 and done.stdout.startswith(f"copied {original} to {store}: 2 runs,"), done.stderr
        assert sorted(p.name for p in store.parent.iterdir()) == ["t.db", "t.db.checkpoints"]  # no staging left
        shutil.copyfile(ckpt_file(original, b, 200), ckpt_file(original, a, 200))  # the original's A is B's state
    elif how == "store copy --move":
        store = tmp_path / "moved" / "s.db"
        store.parent.mkdir()
        done = grokbench("store", "copy", "--move", original, store)
        assert done.returncode == 0 and done.stdout.startswith(f"moved {original} to {store}"), done.stderr
        assert sorted(p.name for p in original.parent.iterdir()) == ["whole.db", "whole.db.checkpoints"]
    else:
        store = original.with_name("r.db")
        os.rename(original, store)
        os.rename(f"{original}.checkpoints", f"{store}.checkpoints")
    checked = grokbench("store", "check", "--store", store)
    assert checked.returncode == 0 and checked.stdout.strip().endswith(f"ok: 8 checkpoint files of {store} verified")
    resumed = grokbench("resume", a, "--steps", 400, "--store", store, "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert_bitwise_whole(store, a, origin["whole"])
    assert ckpt_file(store, a, 400).is_file()  # written into the copy's own folder
    assert all(not p.startswith("/") for p in recorded_paths(store))


# ------------------------------------------------------------------ a damaged, swapped, edited or crafted file


def _craft(path: Path, header: str) -> None:
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(path), metadata={"grokbench": header})


def test_resume_refuses_a_damaged_swapped_missing_or_crafted_checkpoint_with_one_line(origin, original):
    """Each refusal: exit 2, one line, no traceback, the store's bytes unchanged, no checkpoint written."""
    a, b = origin["a"], origin["b"]
    target = ckpt_file(original, a, 200)
    intact = target.read_bytes()
    edited = bytearray(intact)
    edited[-1] ^= 0x01  # one bit of the last tensor's data
    cases = [
        (lambda: target.write_bytes(bytes(edited)), "is damaged or was edited"),
        (lambda: shutil.copyfile(ckpt_file(original, b, 200), target), f"belongs to run '{b}' (its header), not to run {a}"),
        (lambda: target.unlink(), f"checkpoint file of run {a} at step 200 is missing"),
        (lambda: _craft(target, "{}"), "is not a grokbench checkpoint: its header's format None"),
        (lambda: _craft(target, "[]"), "is not a grokbench checkpoint: its header is a JSON list, not an object"),
    ]
    before = original.read_bytes()
    for damage, message in cases:
        damage()
        refused(grokbench("resume", a, "--steps", 400, "--store", original), message)
        assert original.read_bytes() == before and not ckpt_file(original, a, 230).exists()
        target.write_bytes(intact)
    refused(grokbench("resume", a, "--steps", 99999999999999999999, "--store", original), "is not in the range 1<=x<=9223372036854775807")
    assert Store(original).get_run(a)["config"]["train"]["steps"] == 200 and original.read_bytes() == before


def test_store_check_finds_a_missing_a_swapped_and_an_edited_checkpoint(origin, original):
    a, b = origin["a"], origin["b"]
    ckpt_file(original, a, 30).unlink()
    shutil.copyfile(ckpt_file(original, a, 150), ckpt_file(original, b, 150))
    edited = bytearray(ckpt_file(original, b, 200).read_bytes())
    edited[-3] ^= 0x10
    ckpt_file(original, b, 200).write_bytes(bytes(edited))
    before = original.read_bytes()
    checked = grokbench("store", "check", "--store", original)
    problems = {line.split(":")[1].strip(): line for line in checked.stdout.splitlines() if line.startswith("problem: ")}
    assert checked.returncode == 1 and len(problems) == 3, checked.stdout
    assert problems[f"run {a} step 30"].endswith(f"missing file {ckpt_file(original, a, 30)}")
    assert f"belongs to run '{a}' (its header), not to run {b}" in problems[f"run {b} step 150"]
    assert "is damaged or was edited" in problems[f"run {b} step 200"]
    assert checked.stderr.strip() == f"error: store check: 3 of 8 checkpoint files of {original} failed"
    assert original.read_bytes() == before


def test_a_checkpoint_without_a_digest_resumes_with_a_notice(origin, original):
    """A file written before checkpoints carried a digest and a config hash (format 1) still resumes, bitwise, and
    says that it could not be verified."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    a = origin["a"]
    path = ckpt_file(original, a, 200)
    with safe_open(str(path), framework="pt") as f:
        header = json.loads(f.metadata()["grokbench"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    assert header["run_id"] == a and header["digest"].startswith("sha256:") and len(header["config_hash"]) == 16
    old = {k: v for k, v in header.items() if k not in ("digest", "config_hash")} | {"format": 1}
    save_file(tensors, str(path), metadata={"grokbench": json.dumps(old)})
    resumed = grokbench("resume", a, "--steps", 400, "--store", original, "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert f"notice: checkpoint {path} has no digest (written by an older grokbench)" in resumed.stderr
    assert_bitwise_whole(original, a, origin["whole"])


# ------------------------------------------------------------------ the v4 migration and paths outside the store


def _as_v3(store: Path, paths) -> None:
    """What an older grokbench left: schema 3, each checkpoint's path as given by ``paths(run_id, step)``."""
    with closing(sqlite3.connect(store)) as conn, conn:
        for run_id, step in conn.execute("SELECT run_id, step FROM checkpoints").fetchall():
            conn.execute("UPDATE checkpoints SET path = ? WHERE run_id = ? AND step = ?", (paths(run_id, step), run_id, step))
        conn.execute("DROP TABLE step_costs")  # schema 5's
        conn.execute("PRAGMA user_version = 3")


def test_the_migration_rewrites_a_store_s_own_absolute_paths(origin, original, tmp_path):
    _as_v3(original, lambda r, s: str(ckpt_file(original, r, s).resolve()))
    assert recorded_paths(original)[0].startswith("/")
    store = Store(original)
    with closing(sqlite3.connect(original)) as conn, conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
    steps = (30, 90, 150, 200)
    assert set(recorded_paths(original)) == {f"checkpoints/{r}/step-{s}.safetensors" for r in (origin["a"], origin["b"]) for s in steps}
    assert store.checkpoints(origin["a"])[-1]["path"] == ckpt_file(original, origin["a"], 200)
    # migrated, it moves like any store
    moved = tmp_path / "moved.db"
    os.rename(original, moved)
    os.rename(f"{original}.checkpoints", f"{moved}.checkpoints")
    resume_run(origin["a"], store=Store(moved), steps=400)
    assert_bitwise_whole(moved, origin["a"], origin["whole"])


def test_an_unmigrated_store_copied_by_hand_is_refused_with_one_line_and_left_as_it_was(origin, original, tmp_path):
    """Its absolute paths name the original's files, outside its own folders: it is refused on opening (the
    migration is rolled back), and after a migration where it was written it can be copied."""
    _as_v3(original, lambda r, s: str(ckpt_file(original, r, s).resolve()))
    shutil.copytree(original.parent, tmp_path / "copy")
    copy = tmp_path / "copy" / "s.db"
    before = copy.read_bytes()
    refused(grokbench("runs", "--store", copy), f"records checkpoint {Path(f'{original}.checkpoints').resolve()}/")
    refused(grokbench("runs", "--store", copy), f"outside its own folder {copy}.checkpoints: it was copied without being migrated")
    assert copy.read_bytes() == before and not Path(f"{copy}-wal").exists()
    with closing(sqlite3.connect(copy)) as conn, conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
    Store(original)  # migrated where it was written
    done = grokbench("store", "copy", original, tmp_path / "copy2.db")
    assert done.returncode == 0, done.stderr
    assert recorded_paths(tmp_path / "copy2.db") == recorded_paths(original)


@pytest.mark.parametrize("path", ["/etc/passwd", "checkpoints/../../../etc/passwd", "logs", "elsewhere/x.safetensors", "checkpoints//x"])
def test_a_store_recording_a_path_outside_its_folders_is_refused_on_opening(original, path):
    with closing(sqlite3.connect(original)) as conn, conn:
        conn.execute("UPDATE checkpoints SET path = ? WHERE step = 30", (path,))
    before = original.read_bytes()
    with pytest.raises(ConfigError, match="which is not inside its own folders"):
        Store(original, create=False)
    assert original.read_bytes() == before


# ------------------------------------------------------------------ symlinks: never read or written through


def test_symlinks_among_a_store_s_folders_are_refused(origin, original, tmp_path):
    a = origin["a"]
    elsewhere = tmp_path / "elsewhere"
    # a run's folder that is a symlink (to a copy of its own files): refused, not read; not written through
    shutil.move(Path(f"{original}.checkpoints") / a, elsewhere)
    os.symlink(elsewhere, Path(f"{original}.checkpoints") / a)
    listing = sorted(p.name for p in elsewhere.iterdir())
    with pytest.raises(ConfigError, match="it is a symlink inside the store's folders"):
        resume_run(a, store=Store(original), steps=400)
    assert sorted(p.name for p in elsewhere.iterdir()) == listing
    refused(grokbench("store", "copy", original, tmp_path / "c.db"), f"{Path(f'{original}.checkpoints') / a} is a symlink")
    assert not any(p.name.startswith("c.db") or p.name.startswith(".c.db") for p in tmp_path.iterdir())
    # the store's checkpoint folder itself a symlink: the store is refused on opening
    os.unlink(Path(f"{original}.checkpoints") / a)
    shutil.move(elsewhere, Path(f"{original}.checkpoints") / a)
    shutil.move(f"{original}.checkpoints", tmp_path / "real")
    os.symlink(tmp_path / "real", f"{original}.checkpoints")
    refused(grokbench("runs", "--store", original), f"the store's folder {original}.checkpoints is a symlink")
    with pytest.raises(ConfigError, match="is a symlink"):
        Store(original)


def test_store_copy_refuses_an_existing_destination_and_writes_nothing(original, tmp_path):
    (tmp_path / "d.db.checkpoints").mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    refused(grokbench("store", "copy", original, tmp_path / "d.db"), "d.db.checkpoints exists (a copy never replaces anything)")
    for dst, message in [
        (original, "exists (a copy never replaces anything)"),
        (tmp_path / "nodir" / "x.db", "does not exist"),
        (Path(f"{original}.checkpoints") / "x.db", "inside the store's own folder"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            from grokbench.storage.copies import copy_store

            copy_store(Store(original, create=False), dst)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert sorted(p.name for p in original.parent.iterdir()) == ["s.db", "s.db.checkpoints", "whole.db", "whole.db.checkpoints"]


def test_checkpoint_export_is_verified_and_never_written_through_a_symlink(origin, original, tmp_path):
    from grokbench.recording.checkpoints import export

    target = tmp_path / "target.safetensors"
    target.write_bytes(b"mine")
    os.symlink(target, tmp_path / "link.safetensors")
    with pytest.raises(ConfigError, match="refusing to write .* it is a symlink"):
        export(Store(original), origin["a"], tmp_path / "link.safetensors")
    assert target.read_bytes() == b"mine"
    out = tmp_path / "out.safetensors"
    chosen = export(Store(original), origin["a"], out)
    assert chosen["step"] == 200 and out.read_bytes() == ckpt_file(original, origin["a"], 200).read_bytes()
    state, header = checkpoints.read(out)
    assert state.step == 200 and header["run_id"] == origin["a"]

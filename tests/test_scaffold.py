"""`grokbench new-plugin`: the skeleton installs with pip and passes its own tests as generated."""

import json
import subprocess
import sys

from click.testing import CliRunner

from grokbench.cli import cli

from ._install import env_with, pip_install


def test_new_plugin_installs_registers_and_passes_its_own_tests(tmp_path):
    result = CliRunner().invoke(cli, ["new-plugin", "my-plugin", "--dir", str(tmp_path / "pkg")])
    assert result.exit_code == 0, result.output
    pkg = tmp_path / "pkg"
    assert sorted(p.relative_to(pkg).as_posix() for p in pkg.rglob("*") if p.is_file()) == [
        "README.md", "my_plugin/__init__.py", "my_plugin/plugin.py", "pyproject.toml", "tests/conftest.py", "tests/test_plugin.py",
    ]
    assert '[project.entry-points.grokbench]\nmy_plugin = "my_plugin.plugin"' in (pkg / "pyproject.toml").read_text()

    site = pip_install(pkg, tmp_path)
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=pkg, env=env_with(site), capture_output=True, text=True, timeout=300
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "3 passed" in tests.stdout

    listed = subprocess.run([sys.executable, "-m", "grokbench", "plugins", "--json"], env=env_with(site), capture_output=True, text=True, timeout=120)
    mine = [p for p in json.loads(listed.stdout) if p["plugin"] == "my_plugin"]
    assert mine == [
        {
            "plugin": "my_plugin", "distribution": "my-plugin", "version": "0.1.0", "module": "my_plugin.plugin",
            "status": "ok", "error": None, "registers": {"model": ["my-plugin-mlp"]}, "clashes": [],
        }
    ]


def test_new_plugin_refuses_bad_names_and_non_empty_directories(tmp_path):
    bad = CliRunner().invoke(cli, ["new-plugin", "9lives"])
    assert bad.exit_code == 2 and bad.stderr.startswith("error: invalid plugin name '9lives'")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    full = CliRunner().invoke(cli, ["new-plugin", "ok", "--dir", str(tmp_path / "full")])
    assert full.exit_code == 2 and "exists and is not an empty directory" in full.stderr
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]

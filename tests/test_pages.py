"""Report pages that explain themselves: a benchmark report without its reference's runs (a pending row and the
command to run, which runs as printed), seeds still training shown as running, tables folded and wrapped to fit
1000 px, readable log ticks, accuracy axes 0-1, linear bars, and one plotly.js for several pages of one folder."""

import socket
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pandas as pd
import pytest

from grokbench.files import Batch, output_dir
from grokbench.reporting import html as html_page

from .test_benchmark import TINY

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "grokbench", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    "low, high, labels",
    [
        (50, 3000, ["50", "100", "200", "500", "1000", "2000"]),  # a step axis: 1-2-5, not 5 6 7 8 9 100 2 3
        (23, 82, ["30", "40", "50", "60", "70", "80"]),  # within a decade: every digit
        (0.6, 3, ["0.6", "0.7", "0.8", "0.9", "1", "2", "3"]),
        (1e-11, 10, ["1e-10", "1e-8", "1e-6", "1e-4", "0.01", "1"]),  # a loss axis: powers of ten, not 100p
        (60, 90, ["60", "70", "80", "90"]),
        (5, 5, ["5"]),
    ],
)
def test_log_ticks_are_few_and_written_plainly(low, high, labels):
    ticks, text = html_page.log_ticks([low, (low + high) / 2, high, 0.0, float("nan")])
    assert text == labels and all(low <= t <= high for t in ticks) and ticks == sorted(ticks)


def test_a_column_the_same_on_every_row_goes_to_the_caption():
    headers = ["entry", "task", "score", "plugins"]
    rows = [["a", "modadd-cls", 1, "p (grokbench 0.1.0)"], ["b", "modadd-cls", 2, "p (grokbench 0.1.0)"]]
    page = html_page.table(headers, rows, keep=["entry"])
    assert "<th>task</th>" not in page and "<th>plugins</th>" not in page and "<th>score</th>" in page
    assert "<caption>On every row: task: modadd-cls; plugins: p (grokbench 0.1.0).</caption>" in page
    assert page.count("<td") == 4  # entry and score, two rows
    # one row, or a kept column, is never folded: every column says something there
    assert "<th>task</th>" in html_page.table(headers, rows[:1]) and "<caption>" not in html_page.table(headers, rows[:1])
    same = [["a", "x", 1, "p"], ["a", "x", 1, "p"]]
    assert "<th>entry</th>" in html_page.table(headers, same, keep=["entry"])
    # a dotted name may wrap after its dots; a cell with a long word may wrap inside it
    wide = html_page.table(["regularizer.strength"], [["adamw[task.train_fraction=0.6]"], ["x"]])
    assert "<th>regularizer.<wbr>strength</th>" in wide and '<td class="gb-long">adamw[task.train_fraction=0.6]</td>' in wide


def _figure_page(title: str) -> str:
    panel = html_page.Panel("accuracy", "step", "accuracy", y_range=html_page.UNIT_RANGE, log_x=True)
    panel.series.append(html_page.Series("a", [50, 500, 3000], [0.1, 0.5, 1.0]))
    return html_page.page(title, [html_page.figure(html_page.panels_figure("", [panel]))])


def test_several_pages_of_one_folder_share_one_plotly_file_and_one_page_inlines_it(tmp_path):
    one = Batch(output_dir(tmp_path / "one"))
    one.add("a.html", _figure_page("a"))
    assert html_page.share_plotly(one) == []
    one.commit()
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == ["a.html"]
    inline = (tmp_path / "one" / "a.html").stat().st_size
    assert inline > 3_000_000  # plotly.js inside: the page opens alone

    two = Batch(output_dir(tmp_path / "two"))
    for name in ("a.html", "b.html", "c.html"):
        two.add(name, _figure_page(name))
    two.add("table.html", html_page.page("t", [html_page.table(["x"], [[1]])]))  # no figure: no plotly at all
    assert html_page.share_plotly(two) == ["a.html", "b.html", "c.html"]
    two.commit()
    folder = tmp_path / "two"
    assert sorted(p.name for p in folder.iterdir()) == ["a.html", "b.html", "c.html", html_page.PLOTLY_FILE, "table.html"]
    from plotly.offline import get_plotlyjs

    assert (folder / html_page.PLOTLY_FILE).read_text() == get_plotlyjs()
    for name in ("a.html", "b.html", "c.html"):
        text = (folder / name).read_text()
        assert text.count(f'src="{html_page.PLOTLY_FILE}"') == 1 and len(text) < inline / 100
    assert "plotly" not in (folder / "table.html").read_text().split("<body>")[0]

    from .browser import CHROMIUM, Browser

    if not CHROMIUM:
        pytest.skip("chromium is not installed")
    browser = Browser(width=1000, height=900)
    try:
        for name in ("a.html", "b.html"):
            browser.open_report(folder / name, plots=1)
            assert browser.errors() == []
            assert browser.requests() == [(folder / name).resolve().as_uri(), (folder / html_page.PLOTLY_FILE).resolve().as_uri()]
            assert browser.evaluate("document.querySelectorAll('.gb-figure .main-svg').length") >= 1
            # the accuracy axis runs 0 to 1; the log step axis reads 50 100 200 ..., not 5 6 7 8 9 100 2 3
            assert browser.evaluate("Array.from(document.querySelectorAll('.ytick text')).map(e => e.textContent)") == ["0", "0.2", "0.4", "0.6", "0.8", "1"]
            assert browser.evaluate("Array.from(document.querySelectorAll('.xtick text')).map(e => e.textContent)") == ["50", "100", "200", "500", "1000", "2000"]
    finally:
        browser.close()


@pytest.fixture(scope="module")
def no_reference(tmp_path_factory):
    """A real store with one method, noreg, on the tiny benchmark's cls track: its reference adamw not run."""
    work = tmp_path_factory.mktemp("noref")
    (work / "tiny.toml").write_text(TINY)
    done = cli("bench", "run", "--benchmark", "tiny.toml", "--method", "noreg", "--track", "cls", "--store", "b.db", "-q",
               cwd=work)
    assert done.returncode == 0, done.stderr
    return work


def test_a_report_without_the_reference_shows_it_pending_and_says_what_to_run(no_reference, tmp_path):
    work = tmp_path / "w"
    subprocess.run(["cp", "-r", str(no_reference), str(work)], check=True)
    report = cli("bench", "report", "--benchmark", "tiny.toml", "--store", "b.db", "--out", "rep", cwd=work)
    assert report.returncode == 0, report.stderr
    table = pd.read_csv(work / "rep" / "benchmark.csv")
    assert list(table["method"]) == ["adamw", "adamw", "noreg", "noreg"]
    assert list(table["status"]) == ["pending", "pending", "scored", "pending"]
    command = "grokbench bench run --benchmark tiny.toml --method adamw --track cls --store b.db"
    md = (work / "rep" / "benchmark.md").read_text()
    line = f"Speed-ups need the reference method adamw, not scored yet on cls: run {command}"
    rows = {r.split("|")[1].strip(): [c.strip() for c in r.split("|")[2:-1]] for r in md.split("## Tracks")[0].splitlines() if r.startswith("| ")}
    assert f"**{line}**" in md and rows["adamw"][:2] == ["pending", "pending"]
    page = (work / "rep" / "benchmark.html").read_text()
    assert line in page and page.count("<tr><td>adamw</td>") == 1
    # noreg never generalizes: the curves, and a line instead of an empty bar chart and an empty heatmap
    assert page.count('class="gb-figure"') == 1
    assert "No method has a median step to generalize yet" in page and "No speed-up yet" in page

    # the command runs as printed; then the report has the speed-ups and no line
    done = subprocess.run([sys.executable, "-m", "grokbench", *command.split()[1:], "-q"],
                          cwd=work, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    again = cli("bench", "report", "--benchmark", "tiny.toml", "--store", "b.db", "--out", "rep2", cwd=work)
    assert again.returncode == 0, again.stderr
    scored = pd.read_csv(work / "rep2" / "benchmark.csv")
    ref = scored[(scored.method == "adamw") & (scored.track == "cls")].iloc[0]
    assert ref.status == "scored" and ref.speedup_vs_reference == 1.0
    page = (work / "rep2" / "benchmark.html").read_text()
    assert "Speed-ups need" not in page and page.count('class="gb-figure"') == 3


def test_seeds_still_training_show_as_running_and_are_listed(no_reference, tmp_path):
    work = tmp_path / "w"
    subprocess.run(["cp", "-r", str(no_reference), str(work)], check=True)
    trainer = subprocess.Popen(["sleep", "300"])  # a live process on this host, as a worker that trains the seed
    try:
        with closing(sqlite3.connect(work / "b.db")) as conn, conn:
            conn.execute("UPDATE runs SET status = 'running', pid = ?, host = ?, steps = 1200 WHERE seed = 1",
                         (trainer.pid, socket.gethostname()))
        report = cli("bench", "report", "--benchmark", "tiny.toml", "--store", "b.db", "--out", "rep", "--no-plots",
                     cwd=work)
        assert report.returncode == 0, report.stderr
    finally:
        trainer.kill()
        trainer.wait()
    table = pd.read_csv(work / "rep" / "benchmark.csv")
    cls = table[(table.method == "noreg") & (table.track == "cls")].iloc[0]
    assert (cls.status, cls.runs, cls.interrupted) == ("running", 1, 1)
    assert cls.note == "1 seed(s) training now, at step 1,200 of 3,000: report again when they finish"
    md = (work / "rep" / "benchmark.md").read_text()
    rows = {r.split("|")[1].strip(): [c.strip() for c in r.split("|")[2:-1]] for r in md.split("## Tracks")[0].splitlines() if r.startswith("| ")}
    assert rows["noreg"][:2] == ["running (1/2 finished)", "pending"]
    assert "* `noreg`: `cls` (1/2 seeds, running), `reg`" in md
    assert "* noreg on cls: 1 seed(s) training now, at step 1,200 of 3,000" in md
    assert "1 interrupted" not in md and "seed(s) interrupted" not in md  # a live run is not called interrupted

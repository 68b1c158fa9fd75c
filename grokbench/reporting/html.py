"""Self-contained interactive HTML pages: a sortable, filterable table and plotly figures, nothing fetched.

:func:`table` and :func:`figure` make fragments; :func:`page` puts them into one page that inlines plotly.js once
(only when it has a figure), so the file opens offline; :func:`share_plotly` makes the pages of one output folder
load a single copy beside them instead. Figures are responsive; a table moves the columns that are the same on every
row into its caption and wraps long cells, so that it fits a 1000-px window (a wider one scrolls in its box).
Every string that reaches the page is escaped here; callers pass plain text.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from grokbench.version import __version__

if TYPE_CHECKING:
    from grokbench.files import Batch

TABLE_SCRIPT = """
document.querySelectorAll('.gb-board').forEach(function (board) {
  var table = board.querySelector('table'), body = table.tBodies[0];
  var common = table.caption ? table.caption.textContent : '';
  board.querySelector('.gb-filter').addEventListener('input', function (event) {
    var words = event.target.value.toLowerCase().split(/\\s+/).filter(Boolean);
    Array.prototype.forEach.call(body.rows, function (row) {
      var text = (row.textContent + ' ' + common).toLowerCase();
      row.hidden = !words.every(function (w) { return text.indexOf(w) >= 0; });
    });
  });
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
    th.addEventListener('click', function () {
      var ascending = th.getAttribute('aria-sort') !== 'ascending';
      Array.prototype.forEach.call(th.parentNode.cells, function (c) { c.removeAttribute('aria-sort'); });
      th.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
      var key = function (row) { var c = row.cells[i], v = c.getAttribute('data-sort'); return v === null ? c.textContent : v; };
      var rows = Array.prototype.slice.call(body.rows).sort(function (a, b) {
        var x = key(a), y = key(b), nx = parseFloat(x), ny = parseFloat(y);
        var order = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
        return ascending ? order : -order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""

STYLE = """
body{font-family:system-ui,sans-serif;margin:1em auto;padding:0 1em;max-width:1400px;color:#222;box-sizing:border-box}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}
.gb-scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:0.8em}
th,td{border:1px solid #ccc;padding:0.2em 0.35em;text-align:left;vertical-align:top}
td.gb-long{overflow-wrap:anywhere;min-width:6em}
th{background:#f3f3f3;cursor:pointer;user-select:none;position:sticky;top:0}
caption{caption-side:bottom;text-align:left;color:#555;padding:0.3em 0;font-size:0.95em}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
.gb-filter{margin:0.4em 0;padding:0.3em;width:20em;max-width:100%}
.gb-figure{width:100%;max-width:100%}
img{max-width:100%}
"""


@dataclass(frozen=True)
class Cell:
    """A table cell shown as ``text`` and sorted by ``sort`` (a number sorts numerically)."""

    text: str
    sort: float | str | None = None


def _cell(value: Any) -> Cell:
    if isinstance(value, Cell):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Cell(str(value), value)
    return Cell("" if value is None else str(value))


def _sort_attr(value: float | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ' data-sort=""'
    if isinstance(value, float) and math.isinf(value):
        return f' data-sort="{"Infinity" if value > 0 else "-Infinity"}"'
    return f' data-sort="{html.escape(str(value))}"'


#: a cell with a word longer than this may break inside it (an entry's label, a plugin list)
LONG_WORD = 18


def _td(c: Cell) -> str:
    long = ' class="gb-long"' if any(len(word) > LONG_WORD for word in c.text.split()) else ""
    return f"<td{long}{_sort_attr(c.sort)}>{html.escape(c.text)}</td>"


def same_on_every_row(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], keep: Sequence[str] = ()
) -> tuple[list[int], list[tuple[str, str]]]:
    """The columns to show (their indexes) and, as ``(header, text)``, those whose text is the same on every row
    of two or more (but those in ``keep``): they say nothing about a row, so the caption says them once."""
    cells = [[_cell(c) for c in row] for row in rows]
    shown, common = [], []
    for i, header in enumerate(headers):
        texts = {row[i].text for row in cells}
        if len(cells) >= 2 and len(texts) == 1 and header not in keep:
            common.append((header, texts.pop()))
        else:
            shown.append(i)
    return shown, common


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, caption: str = "", keep: Sequence[str] = ()) -> str:
    """A sortable, filterable table; a cell is a :class:`Cell`, a number (sorts numerically) or text. A column
    with the same text on every row (but those named in ``keep``) is said once, in the caption, after ``caption``."""
    esc = html.escape
    shown, common = same_on_every_row(headers, rows, keep)
    # a dotted or underscored name (regularizer.strength) may wrap after its dots and underscores
    head = "".join(f"<th>{esc(headers[i]).replace('.', '.<wbr>').replace('_', '_<wbr>')}</th>" for i in shown)
    body = "".join(
        "<tr>" + "".join(_td(c) for i, c in enumerate(map(_cell, row)) if i in shown) + "</tr>" for row in rows
    )
    said = "; ".join(f"{h}: {t or '(empty)'}" for h, t in common)
    caption = " ".join(filter(None, [caption, f"On every row: {said}." if said else ""]))
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return (
        '<div class="gb-board"><input type="search" class="gb-filter" placeholder="filter rows (words)" aria-label="filter rows">'
        f'<div class="gb-scroll"><table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div></div>'
    )


@dataclass
class Series:
    """One line: ``y`` against ``x``; ``low``/``high`` shade a band (min–max over seeds) when given."""

    name: str
    x: Sequence[float]
    y: Sequence[float]
    low: Sequence[float] | None = None
    high: Sequence[float] | None = None
    dash: bool = False
    group: str | None = None  # series of one group toggle together from the legend


@dataclass
class Panel:
    """A subplot: its series, axis labels and scales."""

    title: str
    x_label: str
    y_label: str
    series: list[Series] = field(default_factory=list)
    log_x: bool = False
    log_y: bool = False
    y_range: tuple[float, float] | None = None  # a fixed y range (accuracy: 0 to 1), else from the data


#: an accuracy axis: 0 to 1, a little room on both sides so that a curve at 0 or 1 is not on the frame
UNIT_RANGE = (-0.03, 1.03)


def _plain(value: float) -> str:
    """A tick label: 0.001, 50, 2000, and 1e-10 or 2e+06 outside [0.001, 100000) (not 100p nor 2M)."""
    if 1e-3 <= abs(value) < 1e5:
        return f"{value:g}"
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def log_ticks(values: Iterable[float]) -> tuple[list[float], list[str]]:
    """Ticks of a log axis over ``values`` and their labels, written plainly: every digit across about one decade
    (30 40 ... 80), 1-2-5 across up to about three (50 100 200 500 1000 2000), powers of ten beyond (every k-th one,
    at most 7 ticks); both ends when fewer than two would show."""
    positive = [v for v in values if v > 0 and math.isfinite(v)]
    if not positive:
        return [], []
    lo, hi = min(positive), max(positive)
    first, last = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    span = math.log10(hi / lo)
    if span <= 1.2:
        candidates = [m * 10.0**e for e in range(first, last + 1) for m in range(1, 10)]
    elif span <= 3.5:
        candidates = [m * 10.0**e for e in range(first, last + 1) for m in (1, 2, 5)]
    else:
        every = math.ceil((last - first) / 6)
        candidates = [10.0**e for e in range(first, last + 1) if e % every == 0]
    ticks = [v for v in candidates if lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9)]
    if len(ticks) < 2:
        ticks = sorted({float(f"{lo:.2g}"), *ticks, float(f"{hi:.2g}")})
    return ticks, [_plain(v) for v in ticks]


def _values(panel: Panel, axis: str) -> list[float]:
    out: list[float] = []
    for s in panel.series:
        if axis == "x":
            out += [float(v) for v in s.x]
        else:
            out += [float(v) for part in (s.y, s.low, s.high) if part is not None for v in part if v is not None]
    return out


def _axis(panel: Panel, axis: str) -> dict[str, Any]:
    """Plotly axis settings: a log axis ticked by :func:`log_ticks`, an accuracy axis from 0 to 1, the title
    kept clear of the tick labels."""
    log = panel.log_x if axis == "x" else panel.log_y
    settings: dict[str, Any] = {
        "title_text": html.escape(panel.x_label if axis == "x" else panel.y_label),
        "title_standoff": 6,
        "automargin": True,
        "type": "log" if log else "linear",
    }
    if log:
        ticks, labels = log_ticks(_values(panel, axis))
        if ticks:
            settings.update(tickmode="array", tickvals=ticks, ticktext=labels)
    elif axis == "y" and panel.y_range is not None:
        settings["range"] = list(panel.y_range)
    return settings


def panels_figure(title: str, panels: Sequence[Panel], *, columns: int = 2) -> Any:
    """A plotly figure of ``panels`` side by side (``columns`` per row), one legend entry per series group
    (clicking it hides or shows that group's series in every panel); ``title`` may be empty."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative
    from plotly.subplots import make_subplots

    columns = max(1, min(columns, len(panels)))
    nrows = math.ceil(len(panels) / columns)
    fig = make_subplots(
        rows=nrows,
        cols=columns,
        subplot_titles=[html.escape(p.title) for p in panels],
        horizontal_spacing=0.12,
        vertical_spacing=min(0.5 / max(nrows, 1), 0.15),
    )
    colors: dict[str, str] = {}
    legend: dict[str, Series] = {}  # the series that carries its group's legend entry: a solid one where there is one
    for s in (s for p in panels for s in p.series):
        if (s.group or s.name) not in legend or (legend[s.group or s.name].dash and not s.dash):
            legend[s.group or s.name] = s
    for i, panel in enumerate(panels):
        row, col = i // columns + 1, i % columns + 1
        for s in panel.series:
            group = s.group or s.name
            color = colors.setdefault(group, qualitative.D3[len(colors) % len(qualitative.D3)])
            if s.low is not None and s.high is not None and len(s.x):
                fig.add_trace(
                    go.Scatter(
                        x=list(s.x) + list(s.x)[::-1],
                        y=list(s.high) + list(s.low)[::-1],
                        fill="toself",
                        fillcolor=color,
                        opacity=0.15,
                        line={"width": 0},
                        hoverinfo="skip",
                        legendgroup=group,
                        showlegend=False,
                    ),
                    row=row,
                    col=col,
                )
            fig.add_trace(
                go.Scatter(
                    x=list(s.x),
                    y=list(s.y),
                    mode="lines+markers" if len(s.x) < 12 else "lines",
                    name=html.escape(group),
                    legendgroup=group,
                    showlegend=legend[group] is s,
                    line={"color": color, "dash": "dash" if s.dash else "solid"},
                    hovertemplate=f"{html.escape(s.name)}<br>{html.escape(panel.x_label)}=%{{x}}<br>{html.escape(panel.y_label)}=%{{y:.4g}}<extra></extra>",
                ),
                row=row,
                col=col,
            )
        fig.update_xaxes(**_axis(panel, "x"), row=row, col=col)
        fig.update_yaxes(**_axis(panel, "y"), row=row, col=col)
    if title:
        fig.update_layout(title={"text": html.escape(title), "font": {"size": 14}})
    fig.update_layout(
        height=320 * nrows + 120,
        autosize=True,
        margin={"l": 60, "r": 20, "t": 70 if title else 40, "b": 90},
        legend={"orientation": "h", "yref": "container", "y": 0, "yanchor": "bottom"},
        template="plotly_white",
    )
    return fig


def figure(fig: Any) -> str:
    """A plotly figure as a page fragment (plotly.js itself comes once, from :func:`page`)."""
    return (
        '<div class="gb-figure">'
        + fig.to_html(full_html=False, include_plotlyjs=False, config={"responsive": True, "displaylogo": False})
        + "</div>"
    )


def heading(text: str, level: int = 2) -> str:
    return f"<h{level}>{html.escape(text)}</h{level}>"


def paragraph(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


#: plotly.js, once for the pages of one folder (:func:`share_plotly`)
PLOTLY_FILE = "plotly.min.js"


def _inline_plotly() -> str:
    from plotly.offline import get_plotlyjs

    return f'<script type="text/javascript">{get_plotlyjs()}</script>'


def page(title: str, fragments: Sequence[str]) -> str:
    """One standalone page: ``fragments`` (from :func:`table`, :func:`figure`, :func:`heading`, ...) under ``title``;
    plotly.js inlined when it has a figure."""
    body = "\n".join(fragments)
    scripts = []
    if 'class="gb-figure"' in body:
        scripts.append(_inline_plotly())
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style>{''.join(scripts)}</head>\n"
        f"<body><h1>{html.escape(title)}</h1>\n{body}\n"
        f'<p style="color:#777;font-size:0.8em">grokbench {html.escape(__version__)}</p>'
        f"<script>{TABLE_SCRIPT}</script></body></html>\n"
    )


def share_plotly(batch: Batch) -> list[str]:
    """When two or more pages staged in ``batch`` inline plotly.js (~4.6 MB each), stage it once as
    :data:`PLOTLY_FILE` beside them and make each page load that file (a sibling file: still nothing fetched from the
    network); a single page keeps it inline, so that it opens alone. The pages changed."""
    inline = _inline_plotly().encode("utf-8")
    pages = [name for name, data in batch.files.items() if name.endswith(".html") and inline in data]
    if len(pages) < 2:
        return []
    shared = f'<script type="text/javascript" src="{PLOTLY_FILE}"></script>'.encode()
    for name in pages:
        batch.files[name] = batch.files[name].replace(inline, shared, 1)
    from plotly.offline import get_plotlyjs

    batch.add(PLOTLY_FILE, get_plotlyjs())
    return pages


def image(png: bytes, alt: str) -> str:
    """A static PNG embedded in the page (no file beside it, nothing fetched)."""
    import base64

    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}"></figure>'


__all__ = [
    "Cell",
    "Panel",
    "Series",
    "figure",
    "heading",
    "image",
    "log_ticks",
    "page",
    "panels_figure",
    "paragraph",
    "share_plotly",
    "table",
]

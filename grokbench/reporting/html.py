"""Self-contained interactive HTML pages: a sortable, filterable table and plotly figures, nothing fetched.

:func:`table` and :func:`figure` make fragments; :func:`page` puts them into one page that inlines plotly.js once
(only when it has a figure), so the file opens offline; figures are responsive and a wide table scrolls in its box.
Every string that reaches the page is escaped here; callers pass plain text.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from grokbench.version import __version__

TABLE_SCRIPT = """
document.querySelectorAll('.gb-board').forEach(function (board) {
  var table = board.querySelector('table'), body = table.tBodies[0];
  board.querySelector('.gb-filter').addEventListener('input', function (event) {
    var words = event.target.value.toLowerCase().split(/\\s+/).filter(Boolean);
    Array.prototype.forEach.call(body.rows, function (row) {
      var text = row.textContent.toLowerCase();
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
table{border-collapse:collapse;font-size:0.85em}
th,td{border:1px solid #ccc;padding:0.25em 0.5em;text-align:left;white-space:nowrap}
th{background:#f3f3f3;cursor:pointer;user-select:none;position:sticky;top:0}
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


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, caption: str = "") -> str:
    """A sortable, filterable table; a cell is a :class:`Cell`, a number (sorts numerically) or text."""
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td{_sort_attr(c.sort)}>{esc(c.text)}</td>" for c in map(_cell, row)) + "</tr>"
        for row in rows
    )
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
        horizontal_spacing=0.09,
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
        fig.update_xaxes(
            title_text=html.escape(panel.x_label), type="log" if panel.log_x else "linear", row=row, col=col
        )
        fig.update_yaxes(
            title_text=html.escape(panel.y_label), type="log" if panel.log_y else "linear", row=row, col=col
        )
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


def page(title: str, fragments: Sequence[str]) -> str:
    """One standalone page: ``fragments`` (from :func:`table`, :func:`figure`, :func:`heading`, ...) under ``title``."""
    body = "\n".join(fragments)
    scripts = []
    if 'class="gb-figure"' in body:
        from plotly.offline import get_plotlyjs

        scripts.append(f'<script type="text/javascript">{get_plotlyjs()}</script>')
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style>{''.join(scripts)}</head>\n"
        f"<body><h1>{html.escape(title)}</h1>\n{body}\n"
        f'<p style="color:#777;font-size:0.8em">grokbench {html.escape(__version__)}</p>'
        f"<script>{TABLE_SCRIPT}</script></body></html>\n"
    )


def image(png: bytes, alt: str) -> str:
    """A static PNG embedded in the page (no file beside it, nothing fetched)."""
    import base64

    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}"></figure>'


__all__ = ["Cell", "Panel", "Series", "figure", "heading", "image", "page", "panels_figure", "paragraph", "table"]

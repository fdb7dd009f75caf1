"""The report as one self-contained HTML page: inline CSS, plots as base64 PNG data URIs.

A short script in the page records script errors and counts the plots that decoded
(`data-plots`, `data-plots-loaded` and `data-errors` on `<body>`), so a headless browser
can check the page without a person looking at it.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
from collections.abc import Sequence
from typing import Any

from rnnedge import __version__

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 3px 6px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.notice { background: #fff6d9; border-left: 4px solid #e0b000; padding: 0.5em 1em; }
.spoiled { background: #ffe5e5; }
img.plot { max-width: 100%; display: block; margin: 1em 0; }
.meta { color: #666; font-size: 0.9em; }
"""

_SELF_CHECK = """
window.rnnedgeErrors = [];
window.addEventListener("error", function (event) {
  window.rnnedgeErrors.push(String(event.message || (event.target && event.target.src) || "error"));
}, true);
window.addEventListener("load", function () {
  var plots = document.querySelectorAll("img.plot");
  var loaded = 0;
  plots.forEach(function (img) { if (img.complete && img.naturalWidth > 0) { loaded += 1; } });
  document.body.dataset.plots = plots.length;
  document.body.dataset.plotsLoaded = loaded;
  document.body.dataset.errors = window.rnnedgeErrors.length;
});
"""


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def image(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img class="plot" alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def notice(text: str) -> str:
    return f'<p class="notice">{esc(text)}</p>'


def table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], classes: Sequence[str] = ()
) -> str:
    """Render an HTML table with numbers right-aligned; `classes` sets a CSS class per row."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for index, row in enumerate(rows):
        cells = "".join(
            f'<td class="num">{esc(_fmt(cell))}</td>'
            if isinstance(cell, (int, float)) and not isinstance(cell, bool)
            else f"<td>{esc(cell)}</td>"
            for cell in row
        )
        css = f' class="{esc(classes[index])}"' if index < len(classes) and classes[index] else ""
        body.append(f"<tr{css}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _fmt(value: float | int) -> str:
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}"


def document(title: str, sources: Sequence[str], sections: Sequence[tuple[str, str]]) -> str:
    """Render the whole page: a header, then each (heading, HTML body) section."""
    generated = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title>",
        f"<style>{_STYLE}</style>",
        f"<script>{_SELF_CHECK}</script>",
        "</head><body>",
        f"<h1>{esc(title)}</h1>",
        f'<p class="meta">Generated {esc(generated)} by rnnedge {esc(__version__)} from '
        f"{esc(', '.join(sources))}.</p>",
    ]
    for heading, body in sections:
        parts.append(f"<h2>{esc(heading)}</h2>\n{body}")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"

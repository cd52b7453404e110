"""Self-contained HTML pieces: a page with inline CSS and a tiny sort script, tables whose headers
sort on click, figures embedded as base64 data: URIs. Nothing is fetched, so a page opens offline."""
from __future__ import annotations

import base64
import html
import math
import re

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:.85em}
th,td{border:1px solid #ccc;padding:.2em .45em;text-align:left;vertical-align:top;max-width:26em}
th{background:#f0f0f0;cursor:pointer;user-select:none;white-space:nowrap}
th.sorted-asc::after{content:" \\25B2"} th.sorted-desc::after{content:" \\25BC"}
tr.published td{color:#555;font-style:italic;background:#fafafa}
tr.ours:nth-child(even) td{background:#f8fbff}
td.num{white-space:nowrap}
td.details{position:relative;white-space:nowrap}
td.details summary{cursor:pointer;color:#246}
td.details details[open]>div{position:absolute;right:0;top:1.7em;z-index:2;width:34em;white-space:normal;
  background:#fff;border:1px solid #999;padding:.5em;box-shadow:0 2px 6px rgba(0,0,0,.2);overflow-wrap:anywhere}
p.legend,p.note{font-size:.85em;color:#444;max-width:80em}
div.figures{display:flex;flex-wrap:wrap;gap:.5em 1em}
figure{display:inline-block;vertical-align:top;margin:.5em 1em .5em 0}
figure img{max-width:30em;border:1px solid #ddd}
figcaption{font-size:.85em;color:#444;max-width:30em}
code,pre{background:#f4f4f4;padding:.1em .3em}
"""

# Sorts by each cell's data-sort (a number) when every cell has one, else by its text.
_SCRIPT = """
document.querySelectorAll('table.sortable').forEach(function(tbl){
  tbl.querySelectorAll('th').forEach(function(th, col){
    th.addEventListener('click', function(){
      var body = tbl.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var asc = !th.classList.contains('sorted-asc');
      tbl.querySelectorAll('th').forEach(function(h){h.classList.remove('sorted-asc','sorted-desc');});
      th.classList.add(asc ? 'sorted-asc' : 'sorted-desc');
      function key(row){
        var cell = row.cells[col], v = cell.getAttribute('data-sort');
        if (v === null || v === '') return asc ? Infinity : -Infinity;
        var n = parseFloat(v); return isNaN(n) ? v : n;
      }
      rows.sort(function(a, b){
        var x = key(a), y = key(b);
        if (typeof x === 'number' && typeof y === 'number') return asc ? x - y : y - x;
        return asc ? String(x).localeCompare(String(y)) : String(y).localeCompare(String(x));
      });
      rows.forEach(function(r){ body.appendChild(r); });
    });
  });
});
"""


def page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
            f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n{body}\n"
            f"<script>{_SCRIPT}</script>\n</body>\n</html>\n")


def inline(text: str) -> str:
    """Escape, then render the one Markdown emphasis the tables use (*published*)."""
    return re.sub(r"\*([^*]+)\*", r"<em>\1</em>", html.escape(text))


def _cell(cell) -> str:
    text, sort = cell if isinstance(cell, tuple) else (cell, cell)
    if isinstance(sort, (int, float)) and not isinstance(sort, bool) and math.isfinite(sort):
        # a short number ("29.0 ± 3.1") never wraps; a longer text with a number to sort by may
        nowrap = " class='num'" if len(str(text)) <= 16 else ""
        attr = f"{nowrap} data-sort='{sort:.10g}'"
    elif sort is None:
        attr = " data-sort=''"
    else:
        attr = f" data-sort='{html.escape(str(sort), quote=True)}'"
    return f"<td{attr}>{inline(str(text))}</td>"


def table(columns, rows: list[list], row_classes: list[str] | None = None,
          details: list[str | None] | None = None) -> str:
    """A sortable table; ``details`` (one text or None per row, facts separated by " · ") adds a last
    column whose cell folds the text away (a <details> element: one click opens it over the page,
    not in the column)."""
    names = list(columns) + (["details"] if details else [])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in names)
    classes = row_classes or [""] * len(rows)
    body = []
    for i, (cells, cls) in enumerate(zip(rows, classes)):
        tail = ""
        if details:
            text = details[i] if i < len(details) else None
            lines = "<br>".join(html.escape(part) for part in (text or "").split(" · "))  # one fact a line
            tail = ("<td class='details' data-sort=''>" + (f"<details><summary>more</summary><div>{lines}</div>"
                    f"</details>" if text else "") + "</td>")
        body.append(f"<tr class='{cls}'>" + "".join(_cell(c) for c in cells) + tail + "</tr>")
    body_html = "\n".join(body)
    return f"<table class='sortable'>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body_html}\n</tbody>\n</table>"


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure(png: bytes, caption: str) -> str:
    alt = html.escape(caption, quote=True)
    return f"<figure><img src='{data_uri(png)}' alt='{alt}'><figcaption>{html.escape(caption)}</figcaption></figure>"

"""A self-contained HTML report: figures embedded as base64 PNG, tables sortable by clicking a header."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.5em} .headline{font-size:1.15em;background:#fdf2e9;border-left:4px solid #e67e22;padding:.6em 1em}
table{border-collapse:collapse;font-size:.85em;margin:1em 0}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f6f7;cursor:pointer;user-select:none} th:hover{background:#e5e8e8}
td.text,th.text{text-align:left} tr.sig-lower td{background:#fdecea} tr.sig-higher td{background:#eafaf1}
figure{margin:1.5em 0} figure img{max-width:100%;border:1px solid #eee} figcaption{font-size:.9em;color:#555}
.meta{color:#666;font-size:.85em} .wide{overflow-x:auto}
"""

# Click a header: sort by that column (numbers numerically, empty cells last); click again to reverse.
SCRIPT = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th, col) {
    th.addEventListener('click', function () {
      var body = table.tBodies[0], rows = Array.from(body.rows);
      var asc = th.dataset.sort !== 'asc';
      table.querySelectorAll('th').forEach(function (h) { delete h.dataset.sort; });
      th.dataset.sort = asc ? 'asc' : 'desc';
      var key = function (r) { var t = r.cells[col].dataset.value ?? r.cells[col].textContent.trim();
        var n = parseFloat(t); return t === '' ? null : (isNaN(n) ? t.toLowerCase() : n); };
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === null) return 1; if (y === null) return -1;
        var c = (typeof x === typeof y) ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === 'number' ? -1 : 1);
        return asc ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
// #sort=COLUMN or #sort=COLUMN:desc in the address sorts the class table on load (a shareable view).
var wanted = decodeURIComponent(location.hash).match(/^#sort=(.+?)(:desc)?$/);
if (wanted) {
  document.querySelectorAll('#class-table th').forEach(function (th) {
    if (th.textContent.trim() === wanted[1]) { th.click(); if (wanted[2]) th.click(); }
  });
}
window.addEventListener('load', function () {
  var shown = Array.from(document.images).filter(function (i) { return i.complete && i.naturalWidth > 0; });
  document.body.dataset.figuresShown = shown.length;
});
"""


def _img(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def table_html(df: pd.DataFrame, table_id: str, text_columns=(), row_class=None) -> str:
    head = "".join(f'<th class="{"text" if c in text_columns else ""}">{html.escape(str(c))}</th>' for c in df.columns)
    body = []
    for i, row in enumerate(df.itertuples(index=False)):
        cells = []
        for c, v in zip(df.columns, row):
            if v is None or v is pd.NA:
                cells.append("<td></td>")
            elif c in text_columns:
                cells.append(f'<td class="text">{html.escape(str(v))}</td>')
            elif isinstance(v, float):
                cells.append("<td></td>" if pd.isna(v) else f'<td data-value="{v:.6g}">{v:.3g}</td>')
            else:
                cells.append(f"<td>{html.escape(str(v))}</td>")
        cls = f' class="{row_class(i)}"' if row_class and row_class(i) else ""
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    return (
        f'<table id="{table_id}" class="sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    )


def render(
    title: str,
    headline: str,
    meta: str,
    settings: pd.DataFrame,
    classes: pd.DataFrame,
    class_row_class,
    figures: list[tuple[str, str, Path]],
    class_note: str = "",
    sections: list[tuple[str, str, str, pd.DataFrame | None]] = (),
    second_headline: str = "",
) -> str:
    """``sections``: (id, heading, text, table or None), shown after the settings; text columns: object ones."""
    extra = ""
    for key, heading, text, df in sections:
        table = ""
        if df is not None:
            texts = tuple(c for c in df.columns if df[c].dtype == object)
            table = f'<div class="wide">{table_html(df, key + "-table", text_columns=texts)}</div>'
        intro = f'<h2>{html.escape(heading)}</h2><p class="meta">{html.escape(text)}</p>'
        extra += f'<section id="{key}">{intro}{table}</section>'
    settings_text = ("setting", "role", "status", "seeds", "worst class")
    figs = "".join(
        f'<figure id="fig-{key}"><img alt="{html.escape(caption)}" src="{_img(path)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        for key, caption, path in figures
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="headline" id="headline">{html.escape(headline)}</p>
{f'<p class="headline" id="repair-headline">{html.escape(second_headline)}</p>' if second_headline else ""}
<p class="meta">{html.escape(meta)}</p>
<h2>Settings</h2>
<div class="wide">{table_html(settings, "settings-table", text_columns=settings_text)}</div>
{extra}
<h2>Figures</h2>
{figs}
<h2>Classes</h2>
<p class="meta">Click a column header to sort. {html.escape(class_note)}</p>
<div class="wide">{table_html(classes, "class-table", text_columns=("class",), row_class=class_row_class)}</div>
<script>{SCRIPT}</script>
</body></html>
"""

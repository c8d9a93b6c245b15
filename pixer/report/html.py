"""A self-contained HTML page: escaped text, tables, embedded PNGs, inline CSS.

Nothing on the page is fetched: pictures are ``data:image/png;base64`` URIs,
the style sheet is inline and there is no script. Every string that comes
from a file (micrograph names, error messages, arguments) is data and goes
through :func:`esc`; only this module writes markup.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

__all__ = ["cards", "esc", "fmt", "image", "kv_table", "page", "section", "table"]

#: Nothing may be fetched: pictures are data URIs, the style is inline, no scripts.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #222;
       background: #fafafa; }
header { background: #1f3b57; color: white; padding: 16px 32px; }
header h1 { margin: 0 0 4px 0; font-size: 22px; }
header p { margin: 0; opacity: 0.85; font-size: 13px; }
nav { padding: 8px 32px; background: #e8eef4; font-size: 13px; }
nav a { margin-right: 14px; color: #1f3b57; }
main { padding: 8px 32px 40px 32px; max-width: 1200px; }
section { background: white; border: 1px solid #ddd; border-radius: 6px; padding: 12px 20px; margin: 16px 0; }
h2 { font-size: 18px; margin: 4px 0 10px 0; color: #1f3b57; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 16px 0 0 0; }
.card { background: white; border: 1px solid #ddd; border-radius: 6px; padding: 8px 14px; min-width: 110px; }
.card .v { font-size: 20px; font-weight: 600; }
.card .k { font-size: 12px; color: #666; }
table { border-collapse: collapse; font-size: 12px; margin: 6px 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f0f3f6; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.grid { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; }
figure img { max-width: 100%; border: 1px solid #ccc; }
.grid figure { width: calc(50% - 6px); }
figcaption { font-size: 12px; color: #555; word-break: break-all; }
.note { font-size: 13px; color: #555; }
.warn { color: #a33; }
.legend span { display: inline-block; margin-right: 14px; font-size: 13px; }
code { background: #f3f3f3; padding: 1px 4px; word-break: break-all; }
"""


def esc(value: object) -> str:
    """HTML-escaped text of any value (quotes included)."""
    return html.escape(str(value), quote=True)


def fmt(value: object, digits: int = 3) -> str:
    """A number for people: ints as ints, floats to ``digits`` decimals, NaN/None as ``-``; escaped."""
    if value is None:
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return esc(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(float(value)):
            return "-"
        return str(int(value)) if float(value).is_integer() and abs(value) < 1e12 else f"{float(value):.{digits}f}"
    return esc(value)


def image(png: bytes, alt: str, caption: str = "") -> str:
    """A figure with an embedded PNG and an optional caption (both escaped)."""
    data = base64.b64encode(png).decode("ascii")
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img alt="{esc(alt)}" src="data:image/png;base64,{data}">{cap}</figure>'


def table(df: pd.DataFrame, max_rows: int = 1000, number_index: bool = False) -> str:
    """A DataFrame as an HTML table, every cell escaped; at most ``max_rows`` rows (a note says so)."""
    shown = df.head(max_rows)
    head = ("<th>#</th>" if number_index else "") + "".join(f"<th>{esc(c)}</th>" for c in shown.columns)
    rows = []
    for i, row in enumerate(shown.itertuples(index=False)):
        cells = "".join(
            f'<td class="num">{fmt(v)}</td>' if isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
            else f"<td>{fmt(v)}</td>"
            for v in row
        )
        rows.append(f"<tr>{f'<td class=num>{i}</td>' if number_index else ''}{cells}</tr>")
    more = f'<p class="note">first {max_rows} of {len(df)} rows shown</p>' if len(df) > max_rows else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{more}"


def kv_table(items: Mapping[str, object]) -> str:
    """A two-column key/value table (values escaped; lists and dicts shown compactly)."""
    rows = []
    for k, v in items.items():
        if isinstance(v, (list, tuple)):
            v = ", ".join(map(str, v))
        elif isinstance(v, dict):
            v = ", ".join(f"{a}={b}" for a, b in v.items())
        rows.append(f"<tr><th>{esc(k)}</th><td>{fmt(v)}</td></tr>")
    return f"<table><tbody>{''.join(rows)}</tbody></table>"


def cards(items: Mapping[str, object]) -> str:
    """Headline numbers as a row of cards."""
    body = "".join(f'<div class="card"><div class="v">{fmt(v)}</div><div class="k">{esc(k)}</div></div>'
                   for k, v in items.items())  # fmt: skip
    return f'<div class="cards">{body}</div>'


def section(anchor: str, title: str, body: str) -> tuple[str, str, str]:
    """One page section: ``(anchor, title, body markup)``; ``body`` is markup built by this module."""
    return anchor, title, body


def page(title: str, subtitle: str, headline: str, sections: Iterable[tuple[str, str, str]]) -> str:
    """The whole page: header, navigation, headline cards, sections."""
    sections = list(sections)
    nav = "".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for a, t, _ in sections)
    body = "".join(f'<section id="{esc(a)}"><h2>{esc(t)}</h2>{b}</section>' for a, t, b in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">"
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{esc(title)}</title>"
        f"<style>{CSS}</style></head><body><header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header>"
        f"<nav>{nav}</nav><main>{headline}{body}</main></body></html>\n"
    )

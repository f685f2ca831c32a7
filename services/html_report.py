"""The HTML report of a run: one self-contained file — inline styles, an inline script, charts drawn as inline
SVG — that opens anywhere with no network: the summary with its confidence intervals, then every cell with its
messages, output and assertion results."""

from __future__ import annotations

import html
from typing import Any

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid #e5e5e5;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f6f6f6}.pass{background:#e7f7e7}.fail{background:#fbe9e9}.error{background:#eeeeee}
pre{white-space:pre-wrap;margin:4px 0;background:#fafafa;padding:6px;border-radius:4px}
.muted{color:#777}.filters button{margin-right:6px}details summary{cursor:pointer}
"""
SCRIPT = """
function show(kind){document.querySelectorAll('tr[data-cell]').forEach(function(r){
  r.style.display=(kind==='all'||r.classList.contains(kind))?'':'none';});}
"""
FILTERS = (
    "<div class='filters'>"
    + "".join(
        f"<button onclick='show(&quot;{k}&quot;)'>{label}</button>"
        for k, label in (("all", "all"), ("fail", "failed"), ("error", "errored"), ("pass", "passed"))
    )
    + "</div>"
)
BAR_WIDTH, ROW = 420, 30


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def chart(groups: list[dict[str, Any]]) -> str:
    """Pass rate per group as SVG bars with their 95 % interval as whiskers."""
    rows = [g for g in groups if g["stats"]["pass_rate"] is not None]
    if not rows:
        return ""
    height, left = ROW * len(rows) + 30, 330
    parts = [
        f"<svg class='chart' xmlns='http://www.w3.org/2000/svg' width='{left + BAR_WIDTH + 60}' height='{height}' "
        "role='img' aria-label='pass rate per group with 95 % intervals'>"
    ]
    for i, g in enumerate(rows):
        y, rate, ci = 10 + ROW * i, g["stats"]["pass_rate"], g["stats"]["pass_rate_ci"]
        parts.append(
            f"<text x='0' y='{y + 15}' font-size='12'>{esc(g['version'])} · {esc(g['provider'])}</text>"
        )
        parts.append(
            f"<rect x='{left}' y='{y + 3}' width='{rate * BAR_WIDTH:.1f}' height='16' fill='#4c78a8'/>"
        )
        if ci:
            x0, x1 = left + ci[0] * BAR_WIDTH, left + ci[1] * BAR_WIDTH
            parts.append(f"<line x1='{x0:.1f}' x2='{x1:.1f}' y1='{y + 11}' y2='{y + 11}' stroke='black'/>")
            parts += [
                f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{y + 6}' y2='{y + 16}' stroke='black'/>"
                for x in (x0, x1)
            ]
        parts.append(f"<text x='{left + BAR_WIDTH + 8}' y='{y + 15}' font-size='12'>{rate:.0%}</text>")
    axis = ROW * len(rows) + 22
    parts += [
        f"<text x='{left + BAR_WIDTH * t:.0f}' y='{axis}' font-size='10' text-anchor='middle'>{t:.0%}</text>"
        for t in (0, 0.25, 0.5, 0.75, 1)
    ]
    return "".join(parts) + "</svg>"


def summary_table(groups: list[dict[str, Any]]) -> str:
    head = (
        "<tr>"
        + "".join(
            f"<th>{name}</th>"
            for name in ("version", "provider", "cells", "errors", "pass rate [95 %]", "mean score [95 %]")
        )
        + "</tr>"
    )
    rows = []
    for g in groups:
        s = g["stats"]
        rate = (
            "–"
            if s["pass_rate"] is None
            else f"{s['pass_rate']:.0%}"
            + (f" [{s['pass_rate_ci'][0]:.0%}, {s['pass_rate_ci'][1]:.0%}]" if s["pass_rate_ci"] else "")
        )
        score = (
            "–"
            if s["mean_score"] is None
            else f"{s['mean_score']:.2f}"
            + (f" [{s['mean_score_ci'][0]:.2f}, {s['mean_score_ci'][1]:.2f}]" if s["mean_score_ci"] else "")
        )
        rows.append(
            f"<tr><td>{esc(g['version'])}</td><td>{esc(g['provider'])}</td><td>{g['cells']}</td>"
            f"<td>{g['errors']}</td><td>{rate}</td><td>{score}</td></tr>"
        )
    return f"<table class='summary'>{head}{''.join(rows)}</table>"


def cell_row(r: dict[str, Any]) -> str:
    kind = "error" if r["error"] else ("pass" if r["pass"] else "fail")
    messages = "".join(
        f"<div class='muted'>[{esc(m.get('role'))}]</div><pre>{esc(m.get('content'))}</pre>"
        for m in r.get("messages") or []
    )
    checks = "".join(
        f"<li>{'✔' if a['pass'] else '✘'} <code>{esc(a['type'])}</code> ({a['score']:.2f}): "
        f"{esc(a['reason'])}</li>"
        for a in r["assertions"]
    )
    output = esc(r["error"] or r["output"])
    rating = r.get("rating")
    if rating:
        checks += (
            f"<li class='rating'>reviewer {esc(rating['reviewer'])}: {'good' if rating['passed'] else 'bad'}"
            + (f", {rating['score']}/5" if rating.get("score") else "")
            + (f" — {esc(rating['comment'])}" if rating.get("comment") else "")
            + "</li>"
        )
    return (
        f"<tr class='{kind}' data-cell='1'><td>{esc(r['case'] or r['case_id'])}</td><td>{esc(r['version'])}</td>"
        f"<td>{esc(r['provider'])}</td><td>{r['repeat']}</td><td>{kind}</td>"
        f"<td>{'' if r['score'] is None else format(r['score'], '.2f')}</td>"
        f"<td><details><summary>{esc((r['error'] or r['output'] or '')[:120])}</summary>"
        f"<h4>Messages</h4>{messages}<h4>Output</h4><pre>{output}</pre><ul>{checks}</ul>"
        f"<div class='muted'>{r['tokens_in']} tokens in · {r['tokens_out']} out · {r['latency_ms']:.0f} ms</div>"
        "</details></td></tr>"
    )


def render(data: dict[str, Any]) -> str:
    title = esc(data["id"])
    strategies = "; ".join(
        f"{esc(k)}: {esc(v.get('name'))}" for k, v in (data.get("strategies") or {}).items()
    )
    cells = "".join(cell_row(r) for r in data["results"])
    head = (
        "<tr>"
        + "".join(
            f"<th>{name}</th>"
            for name in ("case", "version", "provider", "repeat", "result", "score", "output")
        )
        + "</tr>"
    )
    total = data["summary"]
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{STYLE}</style><script>{SCRIPT}</script></head><body>"
        f"<h1>Run {title}</h1><p class='muted'>{esc(data['description'])} · {esc(data['status'])} · "
        f"{esc(data['created_at'])} · strategy {strategies or esc(data['strategy'].get('name', 'as declared'))}</p>"
        f"<h2>Summary</h2><p>{total['passed']} of {total['scored']} scored cells passed; {total['errors']} errored "
        "(counted apart). Intervals are 95 %, over cases (repeats averaged per case).</p>"
        f"{summary_table(data['groups'])}{chart(data['groups'])}"
        f"<h2>Cells</h2>{FILTERS}<table>{head}{cells}</table></body></html>"
    )

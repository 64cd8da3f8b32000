"""A self-contained HTML report (images inlined) for one evaluation."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from insectml.lineage import describe_data

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.headline td{font-size:1.1rem}img{max-width:100%}pre{background:#f7f7f7;padding:1rem;overflow:auto}
"""


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return html.escape("—" if value is None else str(value))


def write_report(
    path: Path,
    *,
    title: str,
    headline: dict[str, object],
    per_class: dict[str, dict[str, float]],
    images: list[Path],
    lineage: dict,
    extra: str = "",
) -> Path:
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in headline.items())
    columns = list(next(iter(per_class.values())).keys()) if per_class else []
    table = "<tr><th>class</th>" + "".join(f"<th>{c}</th>" for c in columns) + "</tr>"
    for name, values in per_class.items():
        table += f"<tr><td>{html.escape(name)}</td>" + "".join(f"<td>{_fmt(values[c])}</td>" for c in columns) + "</tr>"
    figures = "".join(
        f'<figure><img alt="{html.escape(p.name)}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode()}"><figcaption>{html.escape(p.name)}</figcaption></figure>'
        for p in images
    )
    code = lineage.get("code", {})
    summary = {
        "code commit": code.get("commit"),
        "dirty": code.get("dirty"),
        "data": describe_data(lineage.get("data", {})),
        "dataset version": lineage.get("data", {}).get("dataset_version"),
        "seed": lineage.get("seed"),
    }
    lineage_rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in summary.items())
    path.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<h2>Headline</h2><table class='headline'>{rows}</table>"
        f"<h2>Per class</h2><table>{table}</table>{extra}{figures}"
        f"<h2>Lineage</h2><table>{lineage_rows}</table>"
        f"<details><summary>full lineage.json</summary><pre>{html.escape(json.dumps(lineage, indent=2))}</pre></details>"
        "</body></html>\n",
        encoding="utf-8",
    )
    return path


def write_comparison_report(
    path: Path,
    *,
    rows: list[dict],
    columns: list[str],
    best: str,
    images: list[Path],
    extra: str = "",
    verdict: str = "",
    selected_by: str = "validation macro-F1",
) -> Path:
    """The ``verdict`` first (does the chosen model beat the baseline?), then one table row
    per model (best first), per-class recall, the side-by-side plots, and ``extra`` (an HTML
    fragment such as a sweep table) before the plots."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    classes = list(rows[0]["per_class_recall"]) if rows else []
    recall = "<tr><th>class</th>" + "".join(f"<th>{html.escape(r['model'])}</th>" for r in rows) + "</tr>"
    for c in classes:
        recall += (
            f"<tr><td>{html.escape(c)}</td>"
            + "".join(f"<td>{_fmt(r['per_class_recall'][c])}</td>" for r in rows)
            + "</tr>"
        )
    figures = "".join(
        f'<figure><img alt="{html.escape(p.name)}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode()}"><figcaption>{html.escape(p.name)}</figcaption></figure>'
        for p in images
    )
    path.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>wingbeat model comparison</title>"
        f"<style>{_STYLE}</style></head><body><h1>wingbeat model comparison</h1>"
        + (f"<p class='verdict'><b>{html.escape(verdict)}</b></p>" if verdict else "")
        + f"<p>Best by {html.escape(selected_by)}: <b>{html.escape(best)}</b> (this one is packaged). "
        "Test metrics are reported for every model but never used to choose.</p>"
        f"<table><tr>{head}</tr>{body}</table><h2>Per-class recall (test)</h2><table>{recall}</table>"
        f"{extra}{figures}</body></html>\n",
        encoding="utf-8",
    )
    return path

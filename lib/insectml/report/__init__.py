"""Self-contained HTML reports (images inlined), one Jinja2 template set for every family.

A report is data: a title, an optional verdict, a headline table, then sections of text,
tables, figures and example galleries, then the lineage. Templates autoescape everything;
no caller builds HTML. ``write_report`` renders ``templates/report.html.j2`` atomically."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from insectml.fileio import write_text_atomic
from insectml.lineage import describe_data


@dataclass(frozen=True)
class Figure:
    """A PNG (or SVG) file shown inline; ``caption`` defaults to the file name."""

    path: Path
    caption: str = ""


@dataclass(frozen=True)
class Table:
    """``rows`` are lists of cells in ``columns`` order; floats are shown to 4 places.
    ``highlight``: index of a row to emphasise (e.g. the chosen model)."""

    columns: list[str]
    rows: list[list[object]]
    caption: str = ""
    highlight: int | None = None


@dataclass(frozen=True)
class Section:
    title: str
    text: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)


def table_from_mapping(mapping: dict[str, dict[str, object]], key_label: str = "class", caption: str = "") -> Table:
    """One row per key of ``mapping`` (e.g. per-class metrics), columns from the first value."""
    columns = list(next(iter(mapping.values())).keys()) if mapping else []
    return Table([key_label, *columns], [[k, *(v.get(c) for c in columns)] for k, v in mapping.items()], caption)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "—" if value is None else str(value)


def _data_uri(path: Path) -> str:
    mime = "image/svg+xml" if path.suffix.lower() == ".svg" else "image/png"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


@cache
def _environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("insectml.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = _fmt
    env.filters["data_uri"] = _data_uri
    return env


def lineage_summary(lineage: dict) -> dict[str, object]:
    code = lineage.get("code", {})
    return {
        "code commit": code.get("commit"),
        "dirty": code.get("dirty"),
        "data": describe_data(lineage.get("data", {})) if lineage else None,
        "dataset version": lineage.get("data", {}).get("dataset_version"),
        "seed": lineage.get("seed"),
    }


def render(
    *,
    title: str,
    headline: dict[str, object] | None = None,
    sections: list[Section] = (),
    lineage: dict | None = None,
    verdict: str = "",
    intro: list[str] = (),
) -> str:
    """The report as one HTML string (every figure inlined)."""
    missing = [f.path for s in sections for f in s.figures if not Path(f.path).is_file()]
    if missing:
        raise FileNotFoundError(f"report figure missing: {missing[0]}")
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            title=title,
            verdict=verdict,
            intro=list(intro),
            headline=headline or {},
            sections=list(sections),
            lineage=lineage_summary(lineage) if lineage else {},
            lineage_json=json.dumps(lineage, indent=2) if lineage else "",
        )
    )


def write_report(path: Path, **content) -> Path:
    """Render (see ``render``) into ``path``, atomically."""
    return write_text_atomic(path, render(**content))

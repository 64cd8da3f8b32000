"""The monitor's report.html: verdict, headline, the tests, then one section per kind of
drift with its figure, then where the reference came from and what is missing."""

from __future__ import annotations

from pathlib import Path

from insectml.monitor import plots
from insectml.monitor.drift import Result
from insectml.monitor.logs import Sample, finite_rows
from insectml.monitor.reference import Reference
from insectml.report import Figure, Section, Table, write_report

SHOWN_FEATURES = 6  # histograms of the most drifted features
LISTED_FEATURES = 15  # rows of the feature table


def _p(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g}"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _tests(tests: list[Result]) -> Section:
    columns = ["test", "method", "statistic", "effect", "p-value", "flags when", "served", "reference", "flagged"]
    rows = [
        [
            t.name,
            t.method,
            t.statistic,
            t.effect,
            _p(t.p_value),
            t.threshold,
            t.n_served,
            t.n_reference,
            _yes(t.flagged),
        ]
        for t in tests
    ]
    text = [
        "A test flags when the difference is significant (p below alpha) and large enough to matter (its effect "
        "size at or over its threshold): significance alone flags negligible shifts in a long log, an effect size "
        "alone is noise in a short one."
    ]
    return Section("Tests", text=text, tables=[Table(columns, rows)])


def _features(features: list[dict], reference: Sample, served: Sample, out_dir: Path) -> Section:
    shown = [r["feature"] for r in features[:SHOWN_FEATURES] if r["psi"] is not None]
    figure = plots.feature_histograms(
        reference.features, served.features, reference.feature_names, shown, out_dir / "features.png"
    )
    columns = ["feature", "PSI", "KS D", "p", "BH p", "reference median", "served median", "drifted"]
    rows = [
        [
            r["feature"],
            r["psi"],
            r["ks"],
            _p(r["p_value"]),
            _p(r["p_adjusted"]),
            r.get("reference_median"),
            r.get("served_median"),
            _yes(r["flagged"]),
        ]
        for r in features[:LISTED_FEATURES]
    ]
    return Section(
        "Features",
        text=[
            "Per feature: the population stability index on the reference's deciles and the two-sample "
            "Kolmogorov–Smirnov test, p-values Benjamini–Hochberg adjusted over the features; most drifted first."
        ],
        tables=[Table(columns, rows, caption=f"the {len(rows)} features of largest PSI, of {len(features)}")],
        figures=[Figure(figure, f"the {len(shown)} features of largest PSI: reference against served")],
    )


def _mix(test: Result, title: str, out_dir: Path) -> Section:
    figure = plots.mix_bars(test.details["mix"], out_dir / f"{test.name}.png", title.lower())
    new = test.details["new_categories"]
    text = [f"In the log, not in the reference: {', '.join(new)}."] if new else []
    return Section(title, text=text, figures=[Figure(figure, f"{title.lower()}: share of each, reference and served")])


def _embeddings(by_name: dict[str, Result], reference: Sample, served: Sample, out_dir: Path, seed: int) -> Section:
    figure = plots.embedding_map(
        finite_rows(reference.embedding), finite_rows(served.embedding), out_dir / "embeddings.png", seed
    )
    c2st = by_name["embedding_classifier"]
    low, high = c2st.details.get("auc_low"), c2st.details.get("auc_high")
    interval = f" (95% CI {low:.3f} – {high:.3f})" if low is not None else ""
    text = [
        f"Classifier two-sample test: AUC {c2st.statistic:.3f}{interval}; 0.5 means that served and reference "
        "embeddings cannot be told apart."
    ]
    return Section(
        "Embeddings", text=text, figures=[Figure(figure, "embeddings on their first two principal components")]
    )


def write_monitor_report(
    path: Path,
    summary: dict,
    tests: list[Result],
    features: list[dict],
    ref: Reference,
    served: Sample,
    seed: int = 0,
) -> Path:
    """Render the report of one monitoring run into ``path`` (figures beside it), atomically."""
    out_dir = Path(path).parent
    flagged = [t.name for t in tests if t.flagged]
    verdict = (
        f"Drift: {len(flagged)} of {len(tests)} tests crossed their threshold ({', '.join(flagged)})"
        if flagged
        else f"No drift: none of the {len(tests)} tests crossed its threshold"
    )
    by_name = {t.name: t for t in tests}
    sections = [_tests(tests)]
    if features:
        sections.append(_features(features, ref.sample, served, out_dir))
    if "confidence" in by_name:
        figure = plots.score_histograms(
            ref.sample.top_score, served.top_score, out_dir / "confidence.png", "top score of each answer"
        )
        caption = "the top score (probability, similarity or best box score) of each answer"
        sections.append(Section("Confidence", figures=[Figure(figure, caption)]))
    for name, title in (("class_mix", "Class mix"), ("boxes_per_image", "Boxes per image")):
        if name in by_name:
            sections.append(_mix(by_name[name], title, out_dir))
    if "embedding_mmd" in by_name:
        sections.append(_embeddings(by_name, ref.sample, served, out_dir, seed))
    sections.append(
        Section(
            "Reference and notes",
            tables=[Table(["part", "from"], [[k, v] for k, v in ref.sources.items()])],
            text=list(summary["notes"]),
        )
    )
    headline = {
        "family": summary["family"],
        "served model": f"{summary['model']} {summary['version']}",
        "reference model": f"{ref.model} ({ref.model_dir})",
        "records": summary["records"],
        "from": summary["first"],
        "to": summary["last"],
        "tests flagged": f"{len(flagged)} of {len(tests)}",
    }
    return write_report(
        path,
        title=f"Prediction monitoring — {summary['family']}",
        headline=headline,
        sections=sections,
        lineage=ref.lineage,
        verdict=verdict,
    )

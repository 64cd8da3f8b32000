"""Explore a dataset and a results folder from a notebook, the same way for every family.

The notebooks in ``notebooks/`` call these functions and hold no logic of their own:
loaders return small dataclasses, tables are :class:`pandas.DataFrame`, plots are
:class:`matplotlib.figure.Figure` objects made without pyplot (a notebook shows the one a
cell returns, once; nothing accumulates in pyplot's global state).

- the data: :func:`load_data` (the pipeline's validated manifest, or the data validated
  now by the library's own validation), :func:`class_counts`, :func:`group_counts`,
  :func:`split_summary`, :func:`findings`, :func:`duplicate_pairs`, :func:`show_split`,
  :func:`show_examples`, :func:`show_pairs`;
- a results folder: :func:`load_results`, :func:`metrics_table`, :func:`per_class_table`,
  :func:`show_confusion`, :func:`show_history`, :func:`predictions` (the evaluation's, or
  recomputed with the model where the evaluation keeps none), :func:`worst_errors`,
  :func:`show_errors`, :func:`show_embedding_map` (few-shot), :func:`pseudo_labels` and
  :func:`show_pseudo_labels` (detector).
"""

from __future__ import annotations

import json
import re
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from insectml.data.manifest import iter_manifest, read_json, read_manifest
from insectml.errors import InputFileError, ValidationFailed
from insectml.runparams import FAMILY_NAMES

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

SPLIT_ORDER = ("train", "val", "test", "unlabelled")
BOX_IOU = 0.5  # a detection matches a true box at this IoU (as the evaluation's confusion matrix)
BOX_SCORE = 0.5  # detections at or above this score count (as the evaluation's confusion matrix)
GREEN, RED, ORANGE = "#1a9850", "#d73027", "#fc8d59"


def _check_family(family: str) -> None:
    if family not in FAMILY_NAMES:
        raise ValueError(f"{family!r} is not a family (choose from {', '.join(FAMILY_NAMES)})")


def family_folder(path: Path | str, family: str) -> Path:
    """``path/<family>`` when that folder exists (``path`` is a data folder or a pipeline's
    ``--outdir`` holding every family), else ``path`` itself (it is the family's folder)."""
    path = Path(path)
    return path / family if (path / family).is_dir() else path


# --------------------------------------------------------------------------- the data


@dataclass(frozen=True)
class DataView:
    """A validated dataset: its manifest ``rows`` (empty when validation refused the
    data), ``dataset`` (dataset.json; empty then too), the validation ``report``, the
    ``root`` the rows' paths are relative to, and ``origin``: where it all came from."""

    family: str
    root: Path
    rows: list[dict]
    dataset: dict
    report: dict
    origin: str

    def __str__(self) -> str:
        splits = Counter(r["split"] for r in self.rows)
        shown = " / ".join(f"{s} {splits[s]}" for s in _ordered(splits))
        problems, warnings = len(self.report.get("problems", [])), len(self.report.get("warnings", []))
        return (
            f"{self.family}: {len(self.rows)} samples of {len(_classes(self.rows))} classes"
            f"{f' (split: {shown})' if shown else ''}; {problems} problem(s), {warnings} warning(s)\n"
            f"files below {self.root}\n{self.origin}"
        )


def load_data(family: str, data: Path | str, results: Path | str | None = None) -> DataView:
    """The ``family``'s data under ``data`` (a data folder holding ``<family>/``, or the
    family's folder itself), as validated and split: by the pipeline, when ``results`` (a
    pipeline's ``--outdir`` or its family folder) holds its validation (``data/``);
    otherwise validated now with the library's validation and its default settings, in a
    temporary folder that is removed afterwards. Data that validation refuses gives a
    view with no rows and the report that lists why."""
    _check_family(family)
    root = family_folder(data, family)
    if not root.is_dir():
        raise InputFileError(root, f"no {family} data folder here")
    if results is not None:
        validated = family_folder(results, family) / "data"
        if (validated / "validation_report.json").is_file():
            return _read_validated(family, root, validated, f"the pipeline's validation in {validated}")
    with tempfile.TemporaryDirectory(prefix="insectml-explore-") as scratch:
        try:
            _validate(family, root, Path(scratch))
        except ValidationFailed:
            pass  # the report lists every problem; the view shows them
        where = f" (no pipeline validation in {family_folder(results, family) / 'data'})" if results else ""
        return _read_validated(family, root, Path(scratch), f"validated now with default settings{where}")


def _read_validated(family: str, root: Path, folder: Path, origin: str) -> DataView:
    report = read_json(folder / "validation_report.json", "validation report")
    manifest = folder / "manifest.jsonl"
    rows = read_manifest(manifest) if manifest.is_file() else []
    dataset = read_json(folder / "dataset.json", "dataset description") if rows else {}
    return DataView(family, root, rows, dataset, report, origin)


def _validate(family: str, root: Path, out: Path) -> None:
    """The family's validation of ``root`` as the pipeline runs it with default params."""
    if family == "wingbeat":
        from insectml.wingbeat.validate import ValidateConfig, validate_and_split

        labels, classes = root / "labels.csv", root / "classes.txt"
        validate_and_split(
            ValidateConfig(
                labels=labels if labels.is_file() else None,
                data_dir=root,
                out_dir=out,
                classes=classes if classes.is_file() else None,
                # without a labels CSV: <species>/<group>/<file>.wav, grouped by the folder below the species
                **({} if labels.is_file() else {"group_by": "path:1"}),
            )
        )
    elif family == "fewshot":
        from insectml.fewshot.family import PARAMS
        from insectml.fewshot.validate import FewshotValidateConfig, validate_fewshot

        images = root / PARAMS.default("fewshot_images")
        validate_fewshot(FewshotValidateConfig(root=root, out_dir=out, images=images if images.is_dir() else root))
    else:
        from insectml.detector.family import PARAMS
        from insectml.detector.validate import DetectorValidateConfig, validate_detection

        species = root / PARAMS.default("detector_species")
        validate_detection(
            DetectorValidateConfig(root=root, out_dir=out, labels=root, species=species if species.is_dir() else None)
        )


def _labels_of(row: dict) -> list[str]:
    """What a manifest row counts for: its boxes' classes (detector), else its species
    (a detector image with a species label only), else its label."""
    if row.get("labels"):
        return list(row["labels"])
    if row.get("species"):
        return [row["species"]]
    return [row["label"]] if row.get("label") is not None else []


def _classes(rows: list[dict]) -> set[str]:
    return {label for row in rows for label in _labels_of(row)}


def _ordered(splits) -> list[str]:
    return sorted(splits, key=lambda s: (SPLIT_ORDER.index(s) if s in SPLIT_ORDER else len(SPLIT_ORDER), s))


def class_counts(rows: list[dict]) -> pd.DataFrame:
    """Samples per class (rows) and split (columns, plus ``total``), most first; for the
    detector, boxes per class, and species-labelled images under their split
    (``unlabelled``: no boxes yet)."""
    import pandas as pd

    counts = Counter((label, row["split"]) for row in rows for label in _labels_of(row))
    table = pd.Series(counts, dtype="int64").unstack(fill_value=0) if counts else pd.DataFrame()
    table = table.reindex(columns=_ordered(table.columns))
    table["total"] = table.sum(axis=1)
    table.index.name, table.columns.name = "class", None
    return table.sort_values(["total"], ascending=False, kind="stable")


def group_counts(rows: list[dict]) -> pd.DataFrame:
    """Distinct groups (recording event, scene, near-duplicate cluster: what the split
    keeps on one side) per class and split, plus ``total``."""
    import pandas as pd

    groups: dict[tuple[str, str], set] = {}
    for row in rows:
        for label in _labels_of(row):
            groups.setdefault((label, row["split"]), set()).add(row.get("group", row["path"]))
    table = pd.Series({k: len(v) for k, v in groups.items()}, dtype="int64").unstack(fill_value=0)
    table = table.reindex(columns=_ordered(table.columns))
    totals = {label: len({g for (lab, _), gs in groups.items() if lab == label for g in gs}) for label in table.index}
    table["total"] = pd.Series(totals)
    table.index.name, table.columns.name = "class", None
    return table.sort_values(["total"], ascending=False, kind="stable")


def split_summary(rows: list[dict]) -> pd.DataFrame:
    """Per split: samples, classes, groups, groups also found in another split (0 when the
    split is grouped as it must be) and, for few-shot, the support/query subsets."""
    import pandas as pd

    by_split: dict[str, list[dict]] = {}
    for row in rows:
        by_split.setdefault(row["split"], []).append(row)
    group_splits: dict[str, set[str]] = {}
    for row in rows:
        group_splits.setdefault(row.get("group", row["path"]), set()).add(row["split"])
    records = {}
    for split in _ordered(by_split):
        members = by_split[split]
        groups = {r.get("group", r["path"]) for r in members}
        record = {
            "samples": len(members),
            "classes": len(_classes(members)),
            "groups": len(groups),
            "groups shared with another split": sum(len(group_splits[g]) > 1 for g in groups),
        }
        for subset, n in sorted(Counter(r["subset"] for r in members if "subset" in r).items()):
            record[f"{subset} images"] = n
        records[split] = record
    table = pd.DataFrame.from_dict(records, orient="index").fillna(0).astype("int64")
    table.index.name = "split"
    return table


def findings(report: dict) -> pd.DataFrame:
    """Every problem (validation refused the data) and warning (repaired or worth a look)
    of a validation report: ``severity``, ``file`` and ``message``."""
    import pandas as pd

    records = []
    for severity in ("problem", "warning"):
        for text in report.get(f"{severity}s", []):
            file, sep, message = text.partition(": ")
            records.append({"severity": severity, "file": file if sep else "", "message": message if sep else text})
    return pd.DataFrame(records, columns=["severity", "file", "message"])


# "<file>: identical to <other>…" / "<file>: near-duplicate (dHash distance 3) of <other>…" / "<file>: identical
# content to <other> of species …" (insectml.data.duplicates and the families' validation)
_DUPLICATE = re.compile(
    r"^(?P<file>.+?): (?:identical(?: content)? to|near-duplicate \((?P<hash>\w+) distance (?P<distance>\d+)\) of) "
    r"(?P<other>.+?)(?= in (?:the same |another )?group| of class | of species |; |$)"
)


def duplicate_pairs(report: dict) -> pd.DataFrame:
    """The identical and near-duplicate pairs a validation report names: ``file``,
    ``duplicate_of``, ``distance`` (0 for identical bytes, else the hash distance),
    ``severity`` and the whole ``message``."""
    import pandas as pd

    records = []
    for severity in ("problem", "warning"):
        for text in report.get(f"{severity}s", []):
            found = _DUPLICATE.match(text)
            if found:
                records.append(
                    {
                        "file": found["file"],
                        "duplicate_of": found["other"],
                        "distance": int(found["distance"] or 0),
                        "severity": severity,
                        "message": text,
                    }
                )
    return pd.DataFrame(records, columns=["file", "duplicate_of", "distance", "severity", "message"])


# --------------------------------------------------------------------------- drawing


def _figure(rows: int, cols: int, cell: tuple[float, float] = (2.4, 2.2)) -> tuple[Figure, np.ndarray]:
    """A figure of ``rows`` × ``cols`` axes, all off until something is drawn on them."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(cell[0] * max(cols, 1), cell[1] * max(rows, 1)), layout="constrained")
    axes = fig.subplots(max(rows, 1), max(cols, 1), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    return fig, axes


def _title(ax: Axes, text: str, colour: str = "black") -> None:
    # class names are shown as written: a "$" in one must not start mathtext
    ax.set_title("\n".join(line[:48] for line in text.split("\n")), fontsize=7, color=colour, parse_math=False)


def _row_label(ax: Axes, text: str) -> None:
    """A row's class name, beside its first picture, wrapped to the picture's height."""
    import textwrap

    ax.set_ylabel("\n".join(textwrap.wrap(text, 24, break_on_hyphens=False)[:3]), fontsize=7, parse_math=False)


def _image(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _boxes(ax: Axes, boxes: list, labels: list[str], colour: str, scores: list | None = None) -> None:
    from matplotlib.patches import Rectangle

    for k, ((x1, y1, x2, y2), label) in enumerate(zip(boxes, labels, strict=True)):
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=1.5))
        text = label if scores is None else f"{label} {scores[k]:.2f}"
        ax.text(
            x1,
            y1,
            text,
            color="white",
            fontsize=6,
            va="bottom",
            parse_math=False,
            bbox={"facecolor": colour, "alpha": 0.7, "pad": 1, "edgecolor": "none"},
        )


def _show_image(ax: Axes, path: Path, title: str, colour: str = "black") -> None:
    ax.imshow(_image(path))
    ax.axis("on")
    ax.set_xticks([])
    ax.set_yticks([])
    _title(ax, title, colour)


def _recording(path: Path, frontend=None) -> tuple[np.ndarray, np.ndarray, object]:
    """A recording's samples (resampled to the front-end's rate if need be), its log-mel
    spectrogram (dB, as the models see it, cropped to ``max_seconds``; the padding of a
    shorter recording is left out) and the front-end configuration."""
    from insectml.wingbeat.audio import decode_wav
    from insectml.wingbeat.features import log_mel
    from insectml.wingbeat.frontend import FrontendConfig

    cfg = frontend or FrontendConfig()
    audio = decode_wav(path, cfg.sample_rate, resample=True)
    mel, frames = log_mel(audio, cfg)
    return audio, mel[:, :frames], cfg


def _show_spectrogram(ax: Axes, mel: np.ndarray, title: str, colour: str = "black") -> None:
    ax.imshow(mel, origin="lower", aspect="auto", cmap="magma")
    ax.axis("on")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_ylabel("mel band", fontsize=6)
    _title(ax, title, colour)


def _show_waveform(ax: Axes, audio: np.ndarray, rate: int, title: str) -> None:
    ax.plot(np.arange(len(audio)) / rate, audio, linewidth=0.4, color="#2c7fb8")
    ax.axis("on")
    ax.set_yticks([])
    ax.tick_params(labelsize=6)
    ax.set_xlabel("s", fontsize=6)
    _title(ax, title)


def _show_sample(ax: Axes, root: Path, path: str, title: str, colour: str = "black", frontend=None) -> None:
    """A sample as a person looks at it: an image, or a recording's spectrogram."""
    if Path(path).suffix.lower() == ".wav":
        _show_spectrogram(ax, _recording(root / path, frontend)[1], title, colour)
    else:
        _show_image(ax, root / path, title, colour)


def show_split(rows: list[dict], max_classes: int = 30) -> Figure:
    """The split at a glance: samples per class stacked by split (with at most
    ``max_classes`` classes), or, with more, how many classes of each split have 1, 2, …
    samples."""
    table = class_counts(rows).drop(columns="total")
    colours = {"train": "#4575b4", "val": "#fdae61", "test": "#d73027", "unlabelled": "#999999"}
    few = len(table) <= max_classes
    fig, axes = _figure(1, 1, (7.0, 0.22 * len(table) + 1.2 if few else 3.2))
    ax = axes[0, 0]
    ax.axis("on")
    ax.tick_params(labelsize=7)
    if few:
        left = np.zeros(len(table))
        for split in table.columns:
            ax.barh(table.index, table[split], left=left, label=split, color=colours.get(split))
            left += table[split].to_numpy()
        ax.invert_yaxis()
        ax.set_xlabel("samples (detector: boxes)", fontsize=8)
    else:
        width = 0.8 / max(len(table.columns), 1)
        for k, split in enumerate(table.columns):
            sizes = Counter(table[split][table[split] > 0].tolist())
            xs = np.asarray(sorted(sizes), dtype=float)
            ax.bar(
                xs + (k - (len(table.columns) - 1) / 2) * width,
                [sizes[x] for x in sorted(sizes)],
                width,
                label=f"{split} ({sum(sizes.values())} classes)",
                color=colours.get(split),
            )
        ax.set_xticks(sorted({int(x) for x in table.to_numpy().ravel() if x > 0}))
        ax.set_xlabel("samples per class", fontsize=8)
        ax.set_ylabel("classes", fontsize=8)
    ax.legend(fontsize=7)
    ax.set_title(f"{len(table)} classes by split", fontsize=9)
    return fig


def _pick(members: list[int], n: int, rng: np.random.Generator) -> list[int]:
    return sorted(rng.choice(members, size=min(n, len(members)), replace=False).tolist()) if members else []


def show_examples(view: DataView, per_class: int = 2, max_classes: int = 8, seed: int = 0) -> Figure:
    """Examples of each class (the ``max_classes`` largest), chosen with ``seed``:
    wingbeat, a waveform and its spectrogram per recording; detector, images with their
    boxes (and species-labelled images, which have none yet); few-shot, an episode of the
    test classes, support images then query images (see :func:`show_episode`)."""
    if view.family == "fewshot":
        return show_episode(view, n_way=max_classes, seed=seed)
    rng = np.random.default_rng(seed)
    classes = list(class_counts(view.rows).index[:max_classes])
    by_class = {c: [i for i, r in enumerate(view.rows) if c in _labels_of(r)] for c in classes}
    if view.family == "wingbeat":
        fig, axes = _figure(len(classes), 2 * per_class, (2.6, 1.7))
        for r, cls in enumerate(classes):
            for k, i in enumerate(_pick(by_class[cls], per_class, rng)):
                row = view.rows[i]
                audio, mel, cfg = _recording(view.root / row["path"])
                _show_waveform(axes[r, 2 * k], audio, cfg.sample_rate, Path(row["path"]).name)
                _show_spectrogram(axes[r, 2 * k + 1], mel, f"log-mel ({row['split']})")
            _row_label(axes[r, 0], cls)
        fig.suptitle("waveform and log-mel spectrogram of each example", fontsize=9)
        return fig
    boxed = {c: [i for i in members if view.rows[i].get("boxes")] for c, members in by_class.items()}
    species = {c: [i for i in members if not view.rows[i].get("boxes")] for c, members in by_class.items()}
    fig, axes = _figure(len(classes), 2 * per_class, (2.4, 2.4))
    for r, cls in enumerate(classes):
        chosen = _pick(boxed[cls], per_class, rng), _pick(species[cls], per_class, rng)
        for offset, members in zip((0, per_class), chosen, strict=True):
            for k, i in enumerate(members):
                row = view.rows[i]
                ax = axes[r, offset + k]
                _show_image(
                    ax, view.root / row["path"], f"{cls} · {row['split']}" + ("" if offset == 0 else " · species")
                )
                _boxes(ax, row.get("boxes", []), row.get("labels", []), GREEN)
    fig.suptitle(
        "per class: box-labelled images, true boxes in green; right: species-labelled images (no boxes yet)", fontsize=9
    )
    return fig


def show_episode(view: DataView, split: str = "test", n_way: int = 5, max_query: int = 3, seed: int = 0) -> Figure:
    """A few-shot episode from ``split``'s novel classes, as the evaluation builds them:
    ``n_way`` classes (seeded), each a row of its support images (they make the class
    prototype) then up to ``max_query`` query images (classified against the prototypes)."""
    rows = [r for r in view.rows if r["split"] == split]
    classes = sorted({r["label"] for r in rows})
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(classes, size=min(n_way, len(classes)), replace=False).tolist()) if classes else []
    support = {c: [r for r in rows if r["label"] == c and r.get("subset") in ("support", "train")] for c in chosen}
    query = {c: [r for r in rows if r["label"] == c and r.get("subset") == "query"][:max_query] for c in chosen}
    cols = max([len(support[c]) + len(query[c]) for c in chosen], default=1)
    fig, axes = _figure(len(chosen), cols, (1.7, 1.8))
    for r, cls in enumerate(chosen):
        for k, row in enumerate(support[cls] + query[cls]):
            kind = "support" if k < len(support[cls]) else "query"
            _show_image(axes[r, k], view.root / row["path"], kind, "black" if kind == "support" else "#2c7fb8")
        _row_label(axes[r, 0], cls)
    fig.suptitle(f"{split}: {len(chosen)}-way episode: support images (black), then queries (blue)", fontsize=9)
    return fig


def show_pairs(view: DataView, pairs: pd.DataFrame, n: int = 4) -> Figure:
    """The first ``n`` pairs of :func:`duplicate_pairs` side by side (spectrograms for
    recordings), so a person can judge whether they are the same sample."""
    shown = pairs.head(n)
    fig, axes = _figure(len(shown), 2, (2.8, 2.4) if len(shown) else (3.0, 0.6))
    if not len(shown):
        fig.suptitle("validation named no duplicates", fontsize=9)
        return fig
    for r, pair in enumerate(shown.itertuples()):
        how = "identical" if pair.distance == 0 else f"distance {pair.distance}"
        for c, path in enumerate((pair.file, pair.duplicate_of)):
            if (view.root / path).is_file():
                _show_sample(axes[r, c], view.root, path, f"{Path(path).name} ({how})")
    fig.suptitle("duplicates named by validation (left: the file, right: the one it duplicates)", fontsize=9)
    return fig


# --------------------------------------------------------------------------- a results folder


@dataclass(frozen=True)
class Results:
    """A family's results folder: every evaluation's metrics.json (``evaluations``, by
    model), the model folders (``models``), the model the pipeline chose (``best``) and,
    for wingbeat, the comparison."""

    family: str
    folder: Path
    evaluations: dict[str, dict]
    models: dict[str, Path]
    best: str
    comparison: dict = field(default_factory=dict)

    def __str__(self) -> str:
        verdict = self.verdict()
        return (
            f"{self.family} results in {self.folder}: evaluated {', '.join(self.evaluations)}; "
            f"chosen: {self.best}{f'. {verdict}' if verdict else ''}"
        )

    def verdict(self) -> str:
        """The evaluation's one-line verdict against its baseline ("" when the family has none)."""
        if self.comparison.get("verdict"):
            return self.comparison["verdict"].get("sentence", "")
        if self.family == "fewshot":
            from insectml.fewshot.evaluate import verdict_sentence

            return verdict_sentence(self.evaluation().get("verdict"))
        return ""

    def evaluation(self, model: str | None = None) -> dict:
        """The metrics.json of ``model`` (default: the chosen one)."""
        model = model or self.best
        if model not in self.evaluations:
            raise KeyError(f"no evaluation of {model!r} (evaluated: {', '.join(self.evaluations)})")
        return self.evaluations[model]


def load_results(folder: Path | str, family: str) -> Results:
    """The results of ``family`` in ``folder`` (a pipeline's ``--outdir`` or its family
    folder): wingbeat ``evaluation/<model>/``, ``models/<model>/`` and ``comparison/``;
    detector the same for ``generic`` and ``target``; few-shot ``evaluation/`` and
    ``model/`` (named ``model`` here)."""
    _check_family(family)
    folder = family_folder(folder, family)
    if family == "fewshot":
        found = {"model": folder / "evaluation"} if (folder / "evaluation" / "metrics.json").is_file() else {}
        models = {"model": folder / "model"}
    else:
        found = {p.parent.name: p.parent for p in sorted((folder / "evaluation").glob("*/metrics.json"))}
        models = {name: folder / "models" / name for name in found}
    if not found:
        raise InputFileError(
            folder, f"no evaluation metrics.json: not a {family} results folder (give a pipeline's --outdir)"
        )
    evaluations = {name: read_json(path / "metrics.json", "evaluation metrics") for name, path in found.items()}
    comparison = {}
    if (folder / "comparison" / "comparison.json").is_file():
        comparison = read_json(folder / "comparison" / "comparison.json", "model comparison")
    if comparison.get("best") in evaluations:
        best = comparison["best"]
    elif "target" in evaluations:
        best = "target"
    else:
        best = next(iter(evaluations))
    return Results(family, folder, evaluations, models, best, comparison)


def _interval(metrics: dict, name: str) -> tuple[float | None, float | None, float | None]:
    """(value, low, high) of a headline metric as a family's metrics.json holds it: flat
    with ``<name>_low``/``_high``; an episode summary (mean ± ci95); ``open_set_auroc``."""
    if name == "open_set_auroc":
        return (metrics.get("open_set") or {}).get("auroc"), None, None
    value = metrics.get(name)
    if isinstance(value, dict):  # few-shot episodes: mean ± 1.96 σ/√n
        mean, half = value.get("mean"), value.get("ci95")
        if mean is None:
            return None, None, None
        return mean, (mean - half if half is not None else None), (mean + half if half is not None else None)
    return value, metrics.get(f"{name}_low"), metrics.get(f"{name}_high")


def metrics_table(results: Results) -> pd.DataFrame:
    """One row per evaluated model (few-shot: the model and its two baselines, scored on
    the same episodes): each headline metric of the family
    (:attr:`insectml.spec.Family.headline`) with its 95 % interval (``_low``, ``_high``),
    then what else the family reports (validation and CV scores, calibration); ``chosen``
    marks the model the pipeline picked."""
    import pandas as pd

    from insectml.families import FAMILIES

    names = FAMILIES[results.family].headline
    rows: dict[str, dict] = {}
    for model, metrics in results.evaluations.items():
        entries = {model: metrics}
        if results.family == "fewshot":  # the baselines, scored on the same episodes
            entries.update(metrics.get("baselines") or {})
        for name, m in entries.items():
            record: dict[str, object] = {}
            for metric in names:
                value, low, high = _interval(m, metric)
                record.update({metric: value, f"{metric}_low": low, f"{metric}_high": high})
            if results.family == "wingbeat":
                record.update({k: m.get(k) for k in ("val_macro_f1", "cv_macro_f1", "ece_after", "n")})
            elif results.family == "detector":
                record.update({k: m.get(k) for k in ("map_75", "n_images")})
            else:
                record["episodes_5way_5shot"] = _interval(m, "episodes_5way_5shot")[0]
                record["ece"] = (m.get("calibration") or {}).get("ece")
            record["chosen"] = name == results.best
            rows[name] = record
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "model"
    table = table.dropna(axis=1, how="all")
    return table.sort_values(names[0], ascending=False, kind="stable") if names[0] in table else table


def per_class_table(results: Results, model: str | None = None) -> pd.DataFrame:
    """The evaluation's per-class scores of ``model`` (default: the chosen one): precision,
    recall, F1 and support (wingbeat), AP@[.5:.95] (detector); worst first."""
    import pandas as pd

    metrics = results.evaluation(model)
    if "per_class" in metrics:
        table = pd.DataFrame.from_dict(metrics["per_class"], orient="index")
        key = "f1" if "f1" in table else table.columns[0]
    elif "ap_per_class" in metrics:
        table = pd.DataFrame({"AP@[.5:.95]": pd.Series(metrics["ap_per_class"], dtype=float)})
        key = "AP@[.5:.95]"
    else:
        raise KeyError(f"the {results.family} evaluation has no per-class table (see predictions() for few-shot)")
    table.index.name = "class"
    return table.sort_values(key, kind="stable")


def confusion_figure(matrix, labels: list[str], title: str) -> Figure:
    """A confusion matrix (rows: truth) with its counts, coloured by row share (recall)."""
    counts = np.asarray(matrix)
    norm = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = max(3.5, 0.45 * len(labels) + 2)
    fig, axes = _figure(1, 1, (size + 1.2, size))
    ax = axes[0, 0]
    ax.axis("on")
    shown = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7, parse_math=False)
    ax.set_yticks(range(len(labels)), labels, fontsize=7, parse_math=False)
    for (i, j), n in np.ndenumerate(counts):
        if n:
            ax.text(j, i, str(n), ha="center", va="center", fontsize=7, color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9, parse_math=False)
    fig.colorbar(shown, ax=ax, fraction=0.046, label="share of the row")
    return fig


def show_confusion(
    results: Results, model: str | None = None, predictions: Predictions | None = None, max_classes: int = 15
) -> Figure:
    """The confusion matrix of ``model`` (default: the chosen one) as its evaluation wrote
    it (detector: at IoU 0.5, with a background row and column); for few-shot, from
    ``predictions``, limited to the ``max_classes`` classes with the most errors."""
    metrics = results.evaluation(model)
    name = model or results.best
    if "confusion_matrix" in metrics:
        return confusion_figure(metrics["confusion_matrix"], metrics["classes"], f"{results.family} {name}: test")
    if "confusion_matrix_iou50" in metrics:
        title = f"detector {name}: test, IoU {BOX_IOU}, score ≥ {BOX_SCORE}"
        return confusion_figure(metrics["confusion_matrix_iou50"], metrics["confusion_labels"], title)
    if predictions is None:
        raise ValueError(f"the {results.family} evaluation keeps no confusion matrix: pass predictions=")
    matrix = np.zeros((len(predictions.classes),) * 2, dtype=np.int64)
    np.add.at(matrix, (predictions.truth, predictions.predicted), 1)
    errors = matrix.sum(1) - np.diag(matrix) + matrix.sum(0) - np.diag(matrix)
    keep = np.sort(np.argsort(-errors, kind="stable")[:max_classes])
    title = f"{results.family}: query images of the test classes ({len(keep)} of {len(predictions.classes)} classes)"
    return confusion_figure(matrix[np.ix_(keep, keep)], [predictions.classes[i] for i in keep], title)


def history(results: Results, model: str | None = None) -> pd.DataFrame:
    """The training history of ``model`` (default: the chosen one): one row per epoch
    (loss, learning rate, validation scores), as its history.jsonl holds it."""
    import pandas as pd

    path = results.models[model or results.best] / "history.jsonl"
    return pd.DataFrame(list(iter_manifest(path, "training history"))) if path.is_file() else pd.DataFrame()


def show_history(results: Results) -> Figure:
    """Training curves of every model with a history, one colour per model: losses (left;
    training solid, validation dashed) and validation scores (right), per epoch."""
    curves = {name: history(results, name) for name in results.models}
    curves = {name: table for name, table in curves.items() if "epoch" in table}
    fig, axes = _figure(1, 2, (4.2, 3.0))
    for ax in axes.flat:
        ax.axis("on")
        ax.tick_params(labelsize=7)
        ax.set_xlabel("epoch", fontsize=8)
    styles = ("-", "--", ":", "-.")
    for k, (name, table) in enumerate(curves.items()):
        colour = f"C{k % 10}"
        for column, style in (("train_loss", "-"), ("loss", "-"), ("val_loss", "--")):
            if column in table:
                axes[0, 0].plot(table["epoch"], table[column], style, color=colour, label=f"{name} {column}")
        scores = [c for c in table.columns if c.startswith("val_") and c != "val_loss"]
        for column, style in zip(scores, styles * len(scores), strict=False):
            axes[0, 1].plot(table["epoch"], table[column], style, color=colour, label=f"{name} {column[4:]}")
    axes[0, 0].set_title("loss", fontsize=9)
    axes[0, 1].set_title("validation scores", fontsize=9)
    for ax in axes.flat:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
    if not curves:
        axes[0, 0].set_title("no model with a training history (history.jsonl)", fontsize=9)
    return fig


# --------------------------------------------------------------------------- predictions and errors


@dataclass(frozen=True)
class Predictions:
    """A classifier's predictions on the evaluated samples (few-shot: the test classes'
    query images), in one order: ``paths`` (relative to ``root``), ``truth`` and
    ``predicted`` class indices into ``classes``, ``scores`` (samples × classes: calibrated
    probabilities, or cosine similarities for a few-shot model without a temperature).
    Few-shot also keeps the queries' ``embeddings``, the class ``prototypes`` and, per
    class, its ``support`` images."""

    family: str
    model: str
    root: Path
    classes: list[str]
    paths: list[str]
    truth: np.ndarray
    predicted: np.ndarray
    scores: np.ndarray
    frontend: object = None  # wingbeat: the model's FrontendConfig, to draw spectrograms as it sees them
    embeddings: np.ndarray | None = None
    prototypes: np.ndarray | None = None
    support: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Detections:
    """A detector's detections on the test images: per image (``rows``, the manifest's
    test rows) a list of ``{"label", "score", "box"}`` at or above ``min_score``."""

    model: str
    root: Path
    classes: list[str]
    rows: list[dict]
    found: list[list[dict]]
    min_score: float


def predictions(
    results: Results, data: Path | str, model: str | None = None, min_score: float = 0.05
) -> Predictions | Detections:
    """The predictions of ``model`` (default: the chosen one) on its evaluation split, with
    the samples read from ``data`` (a data folder or the family's): wingbeat, as its
    evaluation saved them (predictions.npz); few-shot, the test classes' queries embedded
    now and classified by their nearest prototype, as the evaluation does; detector, the
    test images run through the served detector's code, keeping detections from
    ``min_score``."""
    model = model or results.best
    root = family_folder(data, results.family)
    manifest = results.folder / "data" / "manifest.jsonl"
    if results.family == "wingbeat":
        return _wingbeat_predictions(results, model, root, manifest)
    rows = [r for r in read_manifest(manifest) if r["split"] == "test"]
    if results.family == "fewshot":
        return _fewshot_predictions(results, model, root, rows)
    return _detections(results, model, root, rows, min_score)


def _wingbeat_predictions(results: Results, model: str, root: Path, manifest: Path) -> Predictions:
    from insectml.wingbeat.frontend import FrontendConfig

    saved = results.folder / "evaluation" / model / "predictions.npz"
    if not saved.is_file():
        raise InputFileError(saved, "not found: the evaluation of this model kept no predictions")
    with np.load(saved, allow_pickle=False) as npz:
        ids, truth, predicted, scores = (npz[k] for k in ("ids", "y", "pred", "probs"))
    paths = {r["id"]: r["path"] for r in read_manifest(manifest)} if manifest.is_file() else {}
    config_path = results.models[model] / "config.json"
    config = read_json(config_path, "model config") if config_path.is_file() else {}
    frontend = FrontendConfig.from_dict(config["frontend"]) if "frontend" in config else None
    return Predictions(
        "wingbeat",
        model,
        root,
        list(results.evaluation(model)["classes"]),
        [paths.get(str(i), f"{i}.wav") for i in ids],
        truth,
        predicted,
        scores,
        frontend=frontend,
    )


def _fewshot_predictions(results: Results, model: str, root: Path, rows: list[dict]) -> Predictions:
    import torch

    from insectml.fewshot.data import ImageSet, normalisation
    from insectml.fewshot.embed import embed, load_embedder
    from insectml.fewshot.gallery import probabilities, prototype_classification

    net, config = load_embedder(results.models[model])
    images = ImageSet(rows, root, [], config["image_size"], False, **normalisation(config))
    emb = embed(net, images, torch.device("cpu"))
    gallery, queries, truth = prototype_classification(emb, rows)
    similarities = gallery.similarities(queries)
    temperature = config.get("temperature")
    scores = probabilities(similarities, temperature) if temperature else similarities
    support: dict[str, list[str]] = {}
    for row in rows:
        if row["subset"] == "support":
            support.setdefault(row["label"], []).append(row["path"])
    return Predictions(
        "fewshot",
        model,
        root,
        list(gallery.classes),
        [r["path"] for r in rows if r["subset"] == "query"],
        truth,
        similarities.argmax(1),
        scores,
        embeddings=queries,
        prototypes=gallery.prototypes,
        support=support,
    )


def _detections(results: Results, model: str, root: Path, rows: list[dict], min_score: float) -> Detections:
    from insectml.detector.predict import DetectorPredictor, decode_image

    predictor = DetectorPredictor(results.models[model], score_threshold=min_score)
    found: list[list[dict]] = []
    for start in range(0, len(rows), 8):
        batch = [decode_image((root / r["path"]).read_bytes(), r["path"]) for r in rows[start : start + 8]]
        found += predictor.predict(batch)
    return Detections(model, root, list(predictor.classes), rows, found, min_score)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` (n × 4, x1 y1 x2 y2) with every box of ``b`` (m × 4)."""
    a, b = np.asarray(a, dtype=float).reshape(-1, 4), np.asarray(b, dtype=float).reshape(-1, 4)
    lo, hi = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(hi - lo, 0, None).prod(-1)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-12)


def match_detections(
    truth_boxes: list, truth_labels: list[str], found: list[dict], iou: float = BOX_IOU, score: float = BOX_SCORE
) -> dict[str, int]:
    """One image's detections at or above ``score`` matched to its true boxes, best score
    first, each to the unmatched true box it overlaps most (at least ``iou``), as the
    evaluation's confusion matrix does: counts of ``correct`` (same class),
    ``wrong_class``, ``missed`` true boxes and ``false_alarms``."""
    kept = sorted((d for d in found if d["score"] >= score), key=lambda d: -d["score"])
    overlap = box_iou([d["box"] for d in kept], truth_boxes) if kept and len(truth_boxes) else None
    taken = np.zeros(len(truth_boxes), dtype=bool)
    counts = {"correct": 0, "wrong_class": 0, "missed": 0, "false_alarms": 0}
    for k, det in enumerate(kept):
        if overlap is not None:
            candidates = np.where(taken, -1.0, overlap[k])
            t = int(candidates.argmax())
            if candidates[t] >= iou:
                taken[t] = True
                counts["correct" if truth_labels[t] == det["label"] else "wrong_class"] += 1
                continue
        counts["false_alarms"] += 1
    counts["missed"] = int((~taken).sum())
    return counts


def worst_errors(pred: Predictions | Detections, n: int = 12, score: float = BOX_SCORE) -> pd.DataFrame:
    """The errors a person should look at first. A classifier's: wrong predictions, the
    most confident first (``confidence`` in the predicted class, ``truth_score`` in the
    true one). A detector's: test images by their errors at ``score`` (missed boxes,
    false alarms, wrong classes), most first."""
    import pandas as pd

    if isinstance(pred, Detections):
        records = []
        for row, found in zip(pred.rows, pred.found, strict=True):
            counts = match_detections(row.get("boxes", []), row.get("labels", []), found, score=score)
            errors = counts["missed"] + counts["false_alarms"] + counts["wrong_class"]
            records.append({"path": row["path"], "boxes": len(row.get("boxes", [])), **counts, "errors": errors})
        table = pd.DataFrame(
            records, columns=["path", "boxes", "correct", "wrong_class", "missed", "false_alarms", "errors"]
        )
        table = table[table["errors"] > 0].sort_values("errors", ascending=False, kind="stable")
        return table.head(n).reset_index(drop=True)
    wrong = np.flatnonzero(pred.truth != pred.predicted)
    confidence = pred.scores[wrong, pred.predicted[wrong]]
    order = wrong[np.argsort(-confidence, kind="stable")][:n]
    return pd.DataFrame(
        {
            "path": [pred.paths[i] for i in order],
            "truth": [pred.classes[pred.truth[i]] for i in order],
            "predicted": [pred.classes[pred.predicted[i]] for i in order],
            "confidence": pred.scores[order, pred.predicted[order]],
            "truth_score": pred.scores[order, pred.truth[order]],
        }
    )


def show_errors(pred: Predictions | Detections, n: int = 8, score: float = BOX_SCORE) -> Figure:
    """:func:`worst_errors` as a gallery. Wingbeat: each recording's spectrogram; few-shot:
    each query beside a support image of the class it was taken for and one of its own;
    detector: each image with its true boxes (green) and detections at ``score`` (red)."""
    errors = worst_errors(pred, n, score)
    if isinstance(pred, Detections):
        by_path = {r["path"]: (r, f) for r, f in zip(pred.rows, pred.found, strict=True)}
        cols = 4
        fig, axes = _figure(-(-len(errors) // cols), cols, (2.8, 2.8))
        for ax, error in zip(axes.flat, errors.itertuples(), strict=False):
            row, found = by_path[error.path]
            shown = [d for d in found if d["score"] >= score]
            title = (
                f"{Path(error.path).name}: {error.missed} missed, {error.false_alarms} false, {error.wrong_class} wrong"
            )
            _show_image(ax, pred.root / row["path"], title, RED)
            _boxes(ax, row.get("boxes", []), row.get("labels", []), GREEN)
            _boxes(ax, [d["box"] for d in shown], [d["label"] for d in shown], RED, [d["score"] for d in shown])
        fig.suptitle(
            f"{pred.model}: the test images with the most errors (green: truth, red: detections ≥ {score})", fontsize=9
        )
        return fig
    if pred.family == "fewshot":
        fig, axes = _figure(len(errors), 3, (2.6, 2.4))
        for r, error in enumerate(errors.itertuples()):
            _show_image(axes[r, 0], pred.root / error.path, f"query\n{error.truth}", RED)
            for c, cls in ((1, error.predicted), (2, error.truth)):
                if pred.support.get(cls):
                    kind = f"taken for ({error.confidence:.2f})\n{cls}" if c == 1 else f"its class\n{cls}"
                    _show_image(axes[r, c], pred.root / pred.support[cls][0], kind)
        fig.suptitle(
            "the most confident wrong queries: the query · a support image of the class it was taken for · one of its own class",
            fontsize=8,
        )
        return fig
    cols = 4
    fig, axes = _figure(-(-len(errors) // cols), cols, (2.6, 2.0))
    for ax, error in zip(axes.flat, errors.itertuples(), strict=False):
        title = f"{error.truth} → {error.predicted} ({error.confidence:.2f})"
        _show_sample(ax, pred.root, error.path, title, RED, frontend=pred.frontend)
    fig.suptitle(f"{pred.model}: the most confident wrong predictions (truth → predicted)", fontsize=9)
    return fig


def show_embedding_map(pred: Predictions, seed: int = 0) -> Figure:
    """Few-shot: a 2-D t-SNE map (cosine) of the query embeddings, one colour per class,
    the class prototypes as stars and the misclassified queries circled in red."""
    from sklearn.manifold import TSNE

    if pred.embeddings is None or pred.prototypes is None:
        raise ValueError("no embeddings: a few-shot model's predictions() keep them")
    points = np.vstack([pred.embeddings, pred.prototypes])
    perplexity = float(min(30, max(2, (len(points) - 1) // 3)))
    # exact t-SNE: for the few hundred points of a test split it is the fast one (O(n²))
    method = "exact" if len(points) <= 1000 else "barnes_hut"
    tsne = TSNE(2, metric="cosine", init="pca", perplexity=perplexity, method=method, random_state=seed)
    xy = tsne.fit_transform(points)
    queries, protos = xy[: len(pred.embeddings)], xy[len(pred.embeddings) :]
    fig, axes = _figure(1, 1, (7.0, 6.0))
    ax = axes[0, 0]
    ax.scatter(
        queries[:, 0], queries[:, 1], c=pred.truth, cmap="tab20", s=18, vmin=0, vmax=max(len(pred.classes) - 1, 1)
    )
    ax.scatter(
        protos[:, 0],
        protos[:, 1],
        c=np.arange(len(protos)),
        cmap="tab20",
        marker="*",
        s=160,
        edgecolors="black",
        vmin=0,
        vmax=max(len(pred.classes) - 1, 1),
    )
    wrong = pred.truth != pred.predicted
    ax.scatter(queries[wrong, 0], queries[wrong, 1], facecolors="none", edgecolors=RED, s=80, linewidths=1.2)
    ax.set_title(
        f"{len(pred.classes)} test classes: queries (dots), prototypes (stars), errors circled ({int(wrong.sum())})",
        fontsize=9,
    )
    return fig


# --------------------------------------------------------------------------- detector pseudo-labels


def pseudo_labels(results: Results) -> pd.DataFrame:
    """The detector's pseudo-labelled species images (pseudo/pseudo_manifest.jsonl) to
    review, the least sure first: ``path``, ``species``, ``boxes`` and the lowest box
    ``score``. Empty when the target stage was skipped."""
    import pandas as pd

    path = results.folder / "pseudo" / "pseudo_manifest.jsonl"
    rows = list(iter_manifest(path, "pseudo-labels", allow_empty=True)) if path.is_file() else []
    records = [
        {
            "path": r["path"],
            "species": r.get("species"),
            "boxes": len(r.get("boxes", [])),
            "score": min((r.get("pseudo") or {}).get("scores") or [float("nan")]),
        }
        for r in rows
    ]
    table = pd.DataFrame(records, columns=["path", "species", "boxes", "score"])
    return table.sort_values("score", kind="stable").reset_index(drop=True)


def pseudo_summary(results: Results) -> dict:
    """pseudo/pseudo_report.json: the threshold, images that gained boxes or were dropped,
    boxes per species, and whether the target stage trained (``target_stage``)."""
    path = results.folder / "pseudo" / "pseudo_report.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def show_pseudo_labels(results: Results, data: Path | str, n: int = 8) -> Figure:
    """The ``n`` least sure pseudo-labelled images with their boxes and scores, for a person
    to accept or fix (the same boxes are in pseudo/pseudo_sly/, a Supervisely project)."""
    table = pseudo_labels(results).head(n)
    root = family_folder(data, "detector")
    rows = (
        {
            r["path"]: r
            for r in iter_manifest(
                results.folder / "pseudo" / "pseudo_manifest.jsonl", "pseudo-labels", allow_empty=True
            )
        }
        if len(table)
        else {}
    )
    cols = 4
    fig, axes = _figure(-(-len(table) // cols), cols, (2.8, 2.8))
    for ax, item in zip(axes.flat, table.itertuples(), strict=False):
        row = rows[item.path]
        _show_image(ax, root / row["path"], f"{item.species} · lowest score {item.score:.2f}")
        _boxes(ax, row["boxes"], row["labels"], ORANGE, (row.get("pseudo") or {}).get("scores"))
    fig.suptitle("pseudo-labels to review, least sure first", fontsize=9)
    return fig

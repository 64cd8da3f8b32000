"""The reference a served model is compared with, found in the results folder of the
family it was released from (``<outdir>/<family>``, the run's published outputs).

Where each part comes from, first match wins:

- any family: ``monitor_reference.npz`` (a saved :class:`~insectml.monitor.logs.Sample`)
  in the model's evaluation or model folder: the file a pipeline step should write
  (``Sample.save``), so that monitoring needs nothing but the results folder.
- wingbeat features: a features file (``data/features.npz`` or any npz with ``engineered``
  and ``feature_names``), rows of the train and val splits; else recomputed with the
  model's front-end from the recordings the manifest names (``dataset.json`` source path),
  at most :data:`MAX_RECORDINGS` of them. Class mix and confidence: the calibrated test
  predictions of the model's evaluation (``evaluation/<model>/predictions.npz``).
- few-shot: the embeddings of the manifest's images of the gallery's classes, embedded
  with the model; class mix, confidence and unknown rate: the gallery's answers for the
  query images (held out of the gallery).
- detector: class mix and boxes per image of the annotated train and val images. The
  evaluation keeps neither box scores nor backbone features: confidence and embedding
  drift are not tested (the notes say what the pipeline must add).

The model folder: ``--model``, else the one whose weights' sha256 starts with the log's
``version``, else the one named like the log's ``model`` (the archive's name: the model's,
or ``<family>_<model>``), else ``comparison/best.txt``, else the only one.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from insectml.errors import ConfigError, InputFileError
from insectml.modeldir import read_json
from insectml.monitor.logs import FAMILIES, Sample

log = logging.getLogger(__name__)

REFERENCE_FILE = "monitor_reference.npz"
MAX_RECORDINGS = 1000  # recomputing features or embeddings: a seeded subsample of this many
SPLITS = ("train", "val")  # the data the model was fitted and tuned on


@dataclass
class Reference:
    family: str
    model: str  # the model folder's name
    model_dir: Path
    sample: Sample
    sources: dict[str, str] = field(default_factory=dict)  # part → where it came from
    notes: list[str] = field(default_factory=list)  # what is missing and what the pipeline must add
    lineage: dict | None = None


def results_family(results: Path) -> str:
    """The family of a results folder: ``data/dataset.json``'s, else its models' config.json's."""
    results = Path(results)
    if not results.is_dir():
        raise InputFileError(results, "reference results folder not found")
    candidates = [results / "data" / "dataset.json"] + sorted(results.glob("model*/**/config.json"))
    for path in candidates:
        if path.is_file():
            try:
                family = json.loads(path.read_text(encoding="utf-8")).get("family")
            except (ValueError, AttributeError):
                continue
            if family in FAMILIES:
                return family
    raise InputFileError(
        results, "not the results folder of a family (no data/dataset.json): give e.g. <outdir>/wingbeat"
    )


def model_dirs(results: Path) -> dict[str, Path]:
    """The model folders of a results folder: ``models/<name>/`` and ``model/``."""
    found = {p.parent.name: p.parent for p in sorted(results.glob("models/*/config.json"))}
    if (results / "model" / "config.json").is_file():
        found["model"] = results / "model"
    return found


def _weights_digests(model_dir: Path) -> list[str]:
    try:
        lineage = json.loads((model_dir / "lineage.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    digests = lineage.get("sha256") if isinstance(lineage, dict) else None
    values = list(digests.values()) if isinstance(digests, dict) else []
    version = lineage.get("version") if isinstance(lineage, dict) else None
    return [str(v) for v in values] + ([str(version)] if version else [])


def choose_model(
    results: Path, wanted: str | None, served: tuple[str | None, str | None] = (None, None)
) -> tuple[str, Path, str]:
    """(name, folder, why) of the model the log's answers came from (see the module doc)."""
    dirs = model_dirs(results)
    if not dirs:
        raise InputFileError(results, "holds no model folder (models/<name>/ or model/ with config.json)")
    if wanted:
        if wanted not in dirs:
            raise ConfigError(f"--model {wanted}: not in {results} (its models: {', '.join(dirs)})")
        return wanted, dirs[wanted], "--model"
    model, version = served
    if version:
        match = [n for n, d in dirs.items() if any(v.startswith(version) or version == v for v in _weights_digests(d))]
        if len(match) == 1:
            return match[0], dirs[match[0]], f"its weights match the log's version {version}"
    # the log's model is the archive's name: the model's own, or <family>_<model> (detector_generic)
    named = [n for n in dirs if model and (model == n or model.endswith(f"_{n}"))]
    if len(named) == 1:
        return named[0], dirs[named[0]], f"named like the log's model {model}"
    best = results / "comparison" / "best.txt"
    if best.is_file() and best.read_text().strip() in dirs:
        name = best.read_text().strip()
        return name, dirs[name], "comparison/best.txt (the log's model is not recognised)"
    if len(dirs) == 1:
        ((name, path),) = dirs.items()
        return name, path, "the only model"
    raise ConfigError(
        f"{results} holds several models ({', '.join(dirs)}) and none matches the log's model {model!r} "
        f"version {version!r}: pick one with --model"
    )


def evaluation_dir(results: Path, model: str) -> Path:
    own = results / "evaluation" / model
    return own if own.is_dir() else results / "evaluation"


def _saved_reference(results: Path, model: str, model_dir: Path) -> Path | None:
    for folder in (evaluation_dir(results, model), model_dir):
        if (folder / REFERENCE_FILE).is_file():
            return folder / REFERENCE_FILE
    return None


def load_reference(
    results: Path,
    family: str | None = None,
    model: str | None = None,
    served: tuple[str | None, str | None] = (None, None),
    seed: int = 0,
) -> Reference:
    """The reference of the model the log's answers came from; ``family``, when given,
    must be the results folder's."""
    results = Path(results)
    found = results_family(results)
    if family and family != found:
        raise ConfigError(f"--family {family}, but {results} holds the results of the {found} family")
    name, model_dir, why = choose_model(results, model, served)
    lineage_path = model_dir / "lineage.json"
    lineage = read_json(lineage_path, "model lineage") if lineage_path.is_file() else None
    saved = _saved_reference(results, name, model_dir)
    if saved is not None:
        ref = Reference(found, name, model_dir, Sample.load(saved), {"everything": str(saved)}, lineage=lineage)
    else:
        ref = _LOADERS[found](results, name, model_dir, seed)
        ref.lineage = lineage
        ref.notes.append(
            f"{results} holds no {REFERENCE_FILE}: the reference was assembled from what the run published "
            "(see sources); the evaluation step should save it (insectml.monitor.logs.Sample.save) so that "
            "monitoring reads one file"
        )
    ref.sources["model"] = f"{model_dir} ({why})"
    return ref


def _dataset(results: Path) -> tuple[dict, Path]:
    dataset = read_json(results / "data" / "dataset.json", "dataset description")
    root = Path(str((dataset.get("source") or {}).get("path", "")))
    return dataset, root


def _subsample(rows: list, seed: int, limit: int = MAX_RECORDINGS) -> list:
    if len(rows) <= limit:
        return rows
    keep = np.sort(np.random.default_rng(seed).choice(len(rows), limit, replace=False))
    return [rows[i] for i in keep]


def _wingbeat(results: Path, name: str, model_dir: Path, seed: int) -> Reference:
    from insectml.data.manifest import read_manifest
    from insectml.wingbeat.features import feature_names, load_features

    ref = Reference("wingbeat", name, model_dir, Sample(n=0))
    config = read_json(model_dir / "config.json", "model config")
    features_file = _features_file(results)
    if features_file is not None:
        feats = load_features(features_file)
        keep = np.isin(feats["split"].astype(str), SPLITS)
        ref.sample.features = feats["engineered"][keep].astype(float)
        ref.sample.feature_names = [str(x) for x in feats.get("feature_names", feature_names())]
        ref.sources["features"] = f"{features_file} (train and val rows)"
    else:
        manifest = results / "data" / "manifest.jsonl"
        rows = [r for r in read_manifest(manifest) if r.get("split") in SPLITS]
        rows = _subsample(rows, seed)
        _, root = _dataset(results)
        ref.sample.features = _recompute_features(rows, root, config, manifest)
        ref.sample.feature_names = feature_names()
        ref.sources["features"] = f"recomputed from {len(rows)} train and val recordings in {root}"
        ref.notes.append(
            f"{results} holds no features file: the reference features were recomputed from the recordings; "
            "the pipeline should publish the gathered features (WINGBEAT_FEATURES_GATHER → data/features.npz, "
            "its publishDir is disabled in conf/wingbeat/modules.config)"
        )
    predictions = evaluation_dir(results, name) / "predictions.npz"
    if predictions.is_file():
        classes = read_json(model_dir / "labels.json", "model labels", kind=list)
        with np.load(predictions, allow_pickle=False) as data:
            probs = data["probs"]
        ref.sample.predicted = [str(classes[i]) for i in probs.argmax(axis=1)]
        ref.sample.top_score = probs.max(axis=1)
        ref.sample.n = len(probs)
        ref.sources["class mix and confidence"] = f"{predictions} (calibrated test predictions)"
    else:
        ref.notes.append(f"no {predictions}: class mix and confidence are not tested")
    return ref


def _features_file(results: Path) -> Path | None:
    first = results / "data" / "features.npz"
    candidates = [first] + sorted(p for p in results.rglob("*.npz") if p != first)
    for path in candidates:
        if not path.is_file():
            continue
        try:
            with np.load(path, allow_pickle=False) as data:
                if {"engineered", "feature_names", "split"} <= set(data.files):
                    return path
        except (OSError, ValueError):
            continue
    return None


def _recompute_features(rows: list[dict], root: Path, config: dict, manifest: Path) -> np.ndarray:
    from tqdm import tqdm

    from insectml.wingbeat.audio import decode_wav
    from insectml.wingbeat.features import engineered_features
    from insectml.wingbeat.frontend import FrontendConfig

    if not rows:
        raise InputFileError(manifest, "has no train or val rows to make the reference from")
    missing = [r["path"] for r in rows if not (root / r["path"]).is_file()]
    if missing:
        raise InputFileError(
            root / missing[0],
            f"recording not found ({len(missing)} of the reference's are missing); the results folder holds no "
            "features file, so the reference is recomputed from the recordings the run was made from",
        )
    frontend = FrontendConfig.from_dict(config["frontend"])
    out = []
    for r in tqdm(rows, desc="reference features", unit="rec", disable=None):
        audio = decode_wav(root / r["path"], frontend.sample_rate, name=r["path"], resample=frontend.resample)
        out.append(engineered_features(audio, frontend))
    return np.stack(out).astype(float)


def _fewshot(results: Path, name: str, model_dir: Path, seed: int) -> Reference:
    import torch

    from insectml.data.manifest import read_manifest
    from insectml.fewshot.data import ImageSet, normalisation
    from insectml.fewshot.embed import embed
    from insectml.fewshot.gallery import UNKNOWN
    from insectml.fewshot.predict import FewshotPredictor

    gallery_dir = next(
        (d for d in (evaluation_dir(results, name) / "gallery", model_dir / "gallery") if d.is_dir()), None
    )
    if gallery_dir is None:
        raise InputFileError(results, "holds no gallery (evaluation/gallery): not a few-shot results folder")
    predictor = FewshotPredictor(model_dir, gallery_dir)
    _, root = _dataset(results)
    manifest = results / "data" / "manifest.jsonl"
    known = set(predictor.gallery.classes)
    rows = _subsample([r for r in read_manifest(manifest) if r.get("label") in known], seed)
    missing = [r["path"] for r in rows if not (root / r["path"]).is_file()]
    if not rows or missing:
        where = root / missing[0] if missing else manifest
        raise InputFileError(where, "the reference images are not there (needed to embed the reference)")
    images = ImageSet(rows, root, [], predictor.size, False, **normalisation(predictor.config))
    emb = embed(predictor.model, images, torch.device("cpu"))
    answers = [predictor.gallery.answer(e, 1) for e, r in zip(emb, rows, strict=True) if r.get("subset") == "query"]
    sample = Sample(
        n=len(answers),
        embedding=emb.astype(float),
        predicted=[a["label"] for a in answers if a["label"] != UNKNOWN],
        top_score=np.array([a["score"] for a in answers], dtype=float),
        unknown=np.array([a["label"] == UNKNOWN for a in answers]),
    )
    ref = Reference("fewshot", name, model_dir, sample)
    ref.sources["embeddings"] = f"{len(rows)} images of the gallery's classes in {root}, embedded with {model_dir}"
    ref.sources["class mix, confidence and unknown rate"] = (
        f"the answers of {gallery_dir} for the {len(answers)} query images (held out of the gallery)"
    )
    ref.notes.append(
        "the results folder holds no reference embeddings (the gallery keeps one prototype per class, not the "
        "images' embeddings): they were computed from the images; the evaluation should save them"
    )
    if not answers:
        ref.notes.append("the manifest has no query images: class mix, confidence and unknown rate are not tested")
        sample.predicted = sample.top_score = sample.unknown = None
    return ref


def _detector(results: Path, name: str, model_dir: Path, seed: int) -> Reference:
    from insectml.data.manifest import read_manifest

    manifest = results / "data" / "manifest.jsonl"
    rows = [r for r in read_manifest(manifest) if r.get("split") in SPLITS and isinstance(r.get("labels"), list)]
    if not rows:
        raise InputFileError(manifest, "has no annotated train or val images to make the reference from")
    sample = Sample(
        n=len(rows),
        predicted=[str(label) for r in rows for label in r["labels"]],
        box_count=np.array([len(r["labels"]) for r in rows]),
    )
    ref = Reference("detector", name, model_dir, sample)
    ref.sources["class mix and boxes per image"] = (
        f"the annotated boxes of {len(rows)} train and val images ({manifest})"
    )
    ref.notes += [
        "the detector's reference is its annotations, not its answers: a flag on class mix or boxes per image can "
        "mean that the model answers differently from the annotations, as well as a change of traffic",
        "for confidence drift the evaluation should save the box scores of its test predictions",
        "for embedding drift the evaluation should save the pooled backbone features of the train and val "
        "images (as the server logs them)",
    ]
    return ref


_LOADERS = {"wingbeat": _wingbeat, "fewshot": _fewshot, "detector": _detector}

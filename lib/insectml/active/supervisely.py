"""The labelling project: the selected samples as a Supervisely project folder, ready to
upload, with the model's answers as pre-annotations.

Layout (written whole through :func:`insectml.fileio.staged_folder`)::

    PROJECT/meta.json                 classes and tags
    PROJECT/round_N/img/<item>        the images; for wingbeat the spectrogram PNG
    PROJECT/round_N/ann/<item>.json   the pre-annotation
    PROJECT/round_N/wav/<stem>.wav    wingbeat: the recording the PNG shows
    PROJECT/selection.json            round, strategy, budget, model, and per item its
                                      source, sha256, scores and rank
    PROJECT/.insectml-selection       the marker: a folder ``--force`` may replace

Items are named ``<rank>_<source name>`` so the labelling tool lists them in the order
picked. Pre-annotations (tags and classes declared in meta.json):

- every item: the image tag ``unreviewed``, which the labeller removes once the item is
  done; :func:`insectml.active.merge.read_labelled_export` skips items still carrying it.
- detector: a rectangle per box the server would answer, of the predicted class, with an
  object tag ``confidence`` (its score).
- few-shot and wingbeat: the image tags ``suggested_class`` (the model's answer, maybe
  "unknown") and ``confidence`` (its calibrated probability; for a few-shot model without
  a temperature, the cosine). The labeller confirms the suggestion (removing
  ``unreviewed``), or gives the class: the tag ``class`` (any name: a new species too), or
  the tag named after a known class, or by editing the value of ``suggested_class``.

Wingbeat's image is the recording's log-mel spectrogram drawn with the model's own
front-end (:func:`insectml.wingbeat.frontend.batch_log_mel`, the transform the nets are
trained on) over the whole recording (up to :data:`MAX_PNG_SECONDS`, centre-cropped beyond),
low frequencies at the bottom, each mel band 4 pixels high and each frame 2 wide.
"""

from __future__ import annotations

import math
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from insectml.errors import InputFileError

MARKER = ".insectml-selection"
SELECTION = "selection.json"
FORMAT = "insectml active-learning selection"
# tags of the project (their names are what merge reads back)
UNREVIEWED, SUGGESTED, CONFIDENCE, CLASS = "unreviewed", "suggested_class", "confidence", "class"
OWN_TAGS = (UNREVIEWED, SUGGESTED, CONFIDENCE, CLASS)
MAX_PNG_SECONDS = 30.0
PNG_SCALE = (4, 2)  # pixels per mel band, per frame
TOP_DB = 80.0  # the spectrogram's colour range below its loudest cell

INSTRUCTIONS = (
    "Label each item, then remove its 'unreviewed' tag; items still tagged 'unreviewed' are not merged. "
    "Detector: correct, add or delete the rectangles (an image left with none is a negative). "
    "Few-shot and wingbeat: keep the suggested_class if right, else set the tag 'class' to the right name "
    "(a new species too) or apply the tag named after the class; remove suggested_class if you cannot tell."
)


def dataset_name(round_: int) -> str:
    return f"round_{round_}"


def check_out(out: Path, force: bool) -> None:
    """Raise :class:`InputFileError` unless a project may be written as ``out``: it does not
    exist, is an empty folder, or (with ``force``) is a project this command wrote."""
    out = Path(out)
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir() or out.is_symlink():
        raise InputFileError(out, "exists and is not a folder; give a new --out")
    if not any(out.iterdir()):
        return
    if not (out / MARKER).is_file():
        raise InputFileError(out, "exists and is not a labelling project written by 'insectml select'; not replaced")
    if not force:
        raise InputFileError(out, "a labelling project is already there: pass --force to replace it")


def item_names(items: list, family: str) -> list[str]:
    """``<rank>_<source stem>.<ext>`` for each selected item (PNG for wingbeat), unique."""
    width = max(4, len(str(len(items))))
    names = []
    for rank, item in enumerate(items, start=1):
        stem = re.sub(r"[^\w.-]+", "_", item.path.stem).strip("._")[:60] or "item"
        suffix = ".png" if family == "wingbeat" else item.path.suffix.lower()
        names.append(f"{rank:0{width}d}_{stem}{suffix}")
    return names


def write_project(
    out: Path,
    scored,
    selection,
    *,
    round_: int,
    budget: int,
    seed: int,
    model: dict,
    pool: dict,
    force: bool = False,
) -> Path:
    """Write the selected items of ``scored`` (a :class:`~insectml.active.pool.ScoredPool`,
    picked by ``selection``, a :class:`~insectml.active.strategies.Selection`) as the
    project folder ``out``; returns ``out``."""
    from insectml.detector.supervisely_io import _import_supervisely
    from insectml.fileio import staged_folder, write_json_atomic, write_text_atomic

    check_out(out, force)
    sly = _import_supervisely()
    family = scored.family
    picked = [scored.items[i] for i in selection.indices]
    names = item_names(picked, family)
    meta = project_meta(sly, family, scored.classes)
    ds_name = dataset_name(round_)
    records = []
    with staged_folder(Path(out)) as stage:
        project = sly.Project(str(stage), sly.OpenMode.CREATE)
        project.set_meta(meta)
        dataset = project.create_dataset(ds_name)
        for rank, (index, item, name) in enumerate(zip(selection.indices, picked, names, strict=True), start=1):
            answer = scored.answers[index]
            record = {
                "rank": rank,
                "name": name,
                "image": f"{ds_name}/img/{name}",
                "source": str(item.path.resolve()),
                "sha256": item.sha256,
                "scores": selection.scores_of(index),
                "answer": answer,
            }
            if item.logged:
                record["logged"] = item.logged
            if family == "wingbeat":
                wav = Path(stage) / ds_name / "wav" / f"{Path(name).stem}.wav"
                wav.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(item.path, wav)
                record["wav"] = f"{ds_name}/wav/{wav.name}"
                image_path = Path(dataset.item_dir) / name
                size = spectrogram_png(item.path, model["frontend"], image_path)
                source = str(image_path)
            else:
                size = _image_size(item.path)
                source = str(item.path)
            ann = annotation(sly, meta, family, answer, size, _description(family, answer, rank, selection.strategy))
            dataset.add_item_file(name, source, ann=ann)
            records.append(record)
        document = {
            "format": FORMAT,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "round": round_,
            "strategy": selection.strategy,
            "budget": budget,
            "seed": seed,
            "family": family,
            "model": {k: v for k, v in model.items() if k != "frontend"},
            "classes": scored.classes,
            "dataset": ds_name,
            "pool": {**pool, "scored": len(scored.items), "skipped": scored.skipped},
            "settings": {k: v for k, v in scored.settings.items() if k != "feature_names"},
            "labelling": INSTRUCTIONS,
            "items": records,
        }
        write_json_atomic(Path(stage) / SELECTION, document)
        write_text_atomic(Path(stage) / MARKER, "written by 'insectml select'; --force may replace this folder\n")
    return Path(out)


def project_meta(sly, family: str, classes: list[str]):
    """meta.json: the detector's classes as rectangles; our tags; for the classification
    families a value-less tag per class (how Supervisely labels whole images)."""
    T = sly.TagValueType
    tags = [
        sly.TagMeta(UNREVIEWED, T.NONE, color=_colour(0)),
        sly.TagMeta(CONFIDENCE, T.ANY_NUMBER, color=_colour(1)),
    ]
    obj_classes = []
    if family == "detector":
        obj_classes = [sly.ObjClass(c, sly.Rectangle, color=_colour(i + 4)) for i, c in enumerate(classes)]
    else:
        tags += [
            sly.TagMeta(SUGGESTED, T.ANY_STRING, color=_colour(2)),
            sly.TagMeta(CLASS, T.ANY_STRING, color=_colour(3)),
        ]
        tags += [sly.TagMeta(c, T.NONE, color=_colour(i + 4)) for i, c in enumerate(classes) if c not in OWN_TAGS]
    return sly.ProjectMeta(obj_classes=obj_classes, tag_metas=tags)


def annotation(sly, meta, family: str, answer: dict, size: tuple[int, int], description: str = ""):
    """The pre-annotation of one item: (height, width) ``size``, the model's ``answer``."""
    tags = [sly.Tag(meta.get_tag_meta(UNREVIEWED))]
    labels = []
    height, width = size
    if family == "detector":
        for box in answer["boxes"]:
            x1, y1, x2, y2 = box["box"]
            # Supervisely's corners are inclusive pixel indices; our boxes' right/bottom are exclusive
            left, top = _clamp(math.floor(x1), width), _clamp(math.floor(y1), height)
            right = max(left, _clamp(math.ceil(x2) - 1, width))
            bottom = max(top, _clamp(math.ceil(y2) - 1, height))
            labels.append(
                sly.Label(
                    sly.Rectangle(top, left, bottom, right),
                    meta.get_obj_class(box["label"]),
                    tags=[sly.Tag(meta.get_tag_meta(CONFIDENCE), float(box["score"]))],
                )
            )
    else:
        tags += [
            sly.Tag(meta.get_tag_meta(SUGGESTED), str(answer["label"])),
            sly.Tag(meta.get_tag_meta(CONFIDENCE), float(answer["confidence"])),
        ]
    return sly.Annotation((height, width), labels=labels, img_tags=tags, img_description=description)


def spectrogram_png(wav: Path, frontend: dict, path: Path) -> tuple[int, int]:
    """Draw the recording ``wav``'s log-mel spectrogram (see the module docstring) as the
    PNG ``path``; returns its (height, width)."""
    import dataclasses

    import matplotlib
    from PIL import Image

    from insectml.fileio import open_atomic
    from insectml.wingbeat.frontend import FrontendConfig, batch_log_mel
    from insectml.wingbeat.predict import decode_recording

    cfg = FrontendConfig.from_dict(frontend)
    audio = decode_recording(wav, cfg, name=str(wav))
    seconds = min(len(audio) / cfg.sample_rate, MAX_PNG_SECONDS)
    whole = dataclasses.replace(cfg, max_seconds=max(seconds, cfg.hop_length / cfg.sample_rate))
    mel, frames = batch_log_mel([audio], whole)
    db = mel[0][:, : max(1, int(frames[0]))]
    level = np.clip((db - (db.max() - TOP_DB)) / TOP_DB, 0.0, 1.0)
    rgb = (matplotlib.colormaps["magma"](level)[..., :3] * 255).round().astype(np.uint8)[::-1]
    rgb = np.repeat(np.repeat(rgb, PNG_SCALE[0], axis=0), PNG_SCALE[1], axis=1)
    with open_atomic(path, "wb") as fh:
        Image.fromarray(rgb).save(fh, format="PNG")
    return rgb.shape[0], rgb.shape[1]


def _image_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image scoring has decoded already (the header suffices)."""
    from PIL import Image

    with Image.open(path) as image:
        return image.height, image.width


def _description(family: str, answer: dict, rank: int, strategy: str) -> str:
    if family == "detector":
        said = f"{len(answer['boxes'])} box(es)"
    elif answer.get("unknown"):
        said = f"unknown (nearest {answer['nearest']}, cosine {answer['score']})"
    else:
        said = f"{answer['label']} ({answer['confidence']:.3g})"
    return f"model: {said}; rank {rank} by {strategy}"


def _clamp(value: int, size: int) -> int:
    return int(min(max(value, 0), max(size - 1, 0)))


def _colour(i: int) -> list[int]:
    """A fixed colour per index, so meta.json is the same for the same classes."""
    import matplotlib

    r, g, b, _ = matplotlib.colormaps["tab20"](i % 20)
    return [round(r * 255), round(g * 255), round(b * 255)]

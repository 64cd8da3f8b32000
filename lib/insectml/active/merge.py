"""The labelled project coming back: a Supervisely export of a project ``insectml select``
wrote (:mod:`insectml.active.supervisely`), labelled, turned into manifest-ready rows.

Each row has ``id``, ``path`` (relative to the export folder: the image; for wingbeat the
WAV in ``<dataset>/wav/``), ``md5``, ``group`` (``al-`` and the sample's sha256, so a
sample labelled in two rounds is one group) and ``provenance`` (``al_round``,
``al_strategy``, ``sha256``, and the ``source`` it was selected from), plus, per family:

- detector: ``boxes`` (``[x1, y1, x2, y2]``, right/bottom exclusive, as the Supervisely
  reader makes them), ``labels``, ``width``, ``height``, ``source: "boxes"``. Every object
  counts, whatever its shape (reduced to its bounding box); an image left with none is a
  negative.
- few-shot and wingbeat: ``label``: the labeller's (the tag ``class``, a value-less tag
  named after a class, or the class of an object drawn on it; all must agree), else the
  ``suggested_class`` the labeller kept ("unknown" is no label).

Skipped, and counted in :attr:`LabelledRows.skipped`: items still tagged ``unreviewed``,
items with no label, items whose labels disagree. Round and strategy come from
``selection.json`` (in the folder, or given), else the round from the dataset's name
(``round_N``, which an export keeps) and no strategy.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from insectml.active.supervisely import CLASS, OWN_TAGS, SELECTION, SUGGESTED, UNREVIEWED
from insectml.errors import InputFileError

FAMILIES = ("wingbeat", "detector", "fewshot")


class LabelledRows(list):
    """The rows (a list of dicts), with what was left out: ``skipped`` (reason → count)
    and ``new_classes`` (labels not among the model's classes that were accepted)."""

    def __init__(self, rows=(), skipped: dict | None = None, new_classes: list[str] | None = None) -> None:
        super().__init__(rows)
        self.skipped: dict[str, int] = dict(skipped or {})
        self.new_classes: list[str] = list(new_classes or [])


def read_labelled_export(
    folder: Path,
    family: str,
    *,
    classes: list[str] | None = None,
    allow_new_classes: bool = False,
    selection: Path | None = None,
) -> LabelledRows:
    """The labelled items of the export ``folder`` as manifest-ready rows (see the module
    docstring). ``classes``: the model's (default: selection.json's; with neither, every
    label is accepted); a label outside them is accepted for few-shot (a new class), and
    for the other families only with ``allow_new_classes`` (else an
    :class:`InputFileError` naming them all)."""
    from insectml.data.manifest import file_digest
    from insectml.detector.supervisely_io import _import_supervisely, _short, class_name

    folder = Path(folder)
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}")
    if not (folder / "meta.json").is_file():
        raise InputFileError(folder, "not a Supervisely project (no meta.json)")
    sly = _import_supervisely()
    try:
        project = sly.Project(str(folder), sly.OpenMode.READ)
    except Exception as exc:  # noqa: BLE001 - the SDK raises many types for a malformed project
        raise InputFileError(folder, f"Supervisely project cannot be read ({_short(exc)})") from None
    chosen = _selection(selection or folder / SELECTION)
    known = classes if classes is not None else chosen.get("classes")
    known = None if known is None else {class_name(c) for c in known}
    by_name = {r.get("name"): r for r in chosen.get("items", []) if isinstance(r, dict)}
    class_tags = (
        set()
        if family == "detector"
        else {t.name for t in project.meta.tag_metas if t.value_type == sly.TagValueType.NONE} - set(OWN_TAGS)
    )
    rows, skipped, unknown = [], Counter(), Counter()
    for dataset in sorted(project.datasets, key=lambda d: d.name):
        round_ = chosen.get("round", _round_of(dataset.name))
        for item in sorted(dataset):  # <rank>_<name>: in the order selected
            image_path, ann_path = (Path(p) for p in dataset.get_item_paths(item))
            try:
                data = json.loads(ann_path.read_text(encoding="utf-8"))
                objects = [sly.Label.from_json(obj, project.meta) for obj in data.get("objects", [])]
                size = data["size"]
            except Exception as exc:  # noqa: BLE001 - malformed JSON, unknown class, bad geometry
                raise InputFileError(ann_path, f"annotation cannot be read ({_short(exc)})") from None
            tags = {t["name"]: t.get("value") for t in data.get("tags", []) if isinstance(t, dict)}
            if UNREVIEWED in tags:
                skipped["unreviewed"] += 1
                continue
            chosen_item = by_name.get(item, {})
            if family == "wingbeat":
                sample = folder / chosen_item["wav"] if "wav" in chosen_item else _wav_of(image_path)
                if not sample.is_file():
                    raise InputFileError(sample, f"the recording of {item} is missing from the export")
            else:
                sample = image_path
            sha = chosen_item.get("sha256") or _sha256(sample)
            row = {
                "id": f"al/{dataset.name}/{Path(item).stem}",
                "path": sample.relative_to(folder).as_posix(),
                "md5": file_digest(sample),
                "group": f"al-{sha[:16]}",
                "provenance": {
                    "al_round": round_,
                    "al_strategy": chosen.get("strategy"),
                    "sha256": sha,
                    **({"source": chosen_item["source"]} if "source" in chosen_item else {}),
                },
            }
            if family == "detector":
                boxes, labels = [], []
                for label in objects:
                    bbox = label.geometry.to_bbox()
                    boxes.append([bbox.left, bbox.top, bbox.right + 1, bbox.bottom + 1])
                    labels.append(class_name(label.obj_class.name))
                row.update(boxes=boxes, labels=labels, width=size["width"], height=size["height"], source="boxes")
                row["species"], row["tags"] = None, {k: v for k, v in tags.items() if k not in OWN_TAGS}
                found = labels
            else:
                given = {class_name(str(tags[CLASS]))} if str(tags.get(CLASS) or "").strip() else set()
                given |= {class_name(name) for name in tags if name in class_tags}
                given |= {class_name(label.obj_class.name) for label in objects}
                if len(given) > 1:
                    skipped["conflicting labels"] += 1
                    continue
                suggested = class_name(str(tags.get(SUGGESTED) or ""))
                label = next(iter(given)) if given else suggested
                if not label or label == "unknown":
                    skipped["no label"] += 1
                    continue
                row["label"] = label
                found = [label]
            for name in found:
                if known is not None and name not in known:
                    unknown[name] += 1
            rows.append(row)
    new = sorted(unknown)
    if new and family != "fewshot" and not allow_new_classes:
        raise InputFileError(
            folder,
            f"labels not among the model's classes: {', '.join(new)} ({sum(unknown.values())} label(s)); "
            "accept new classes explicitly to merge them",
        )
    return LabelledRows(rows, dict(skipped), new)


def _selection(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputFileError(path, f"not a selection file ({exc})") from None
    if not isinstance(value, dict):
        raise InputFileError(path, "not a selection file (expected a JSON object)")
    return value


def _round_of(name: str) -> int | None:
    match = re.fullmatch(r"round_(\d+)", name)
    return int(match.group(1)) if match else None


def _wav_of(image_path: Path) -> Path:
    """``<dataset>/img/<stem>.png`` → ``<dataset>/wav/<stem>.wav``."""
    return image_path.parent.parent / "wav" / f"{Path(image_path.name).stem}.wav"


def _sha256(path: Path) -> str:
    from insectml.active.pool import file_sha256

    return file_sha256(path)

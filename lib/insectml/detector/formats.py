"""Box labels in the formats real tools export, read into the same :class:`ImageRecord`\\ s.

Which reader reads which format, and why (``supervision`` 0.31.2, installed, was tried
first: ``sv.DetectionDataset.from_coco`` / ``from_yolo`` / ``from_pascal_voc``):

- **supervisely**: the ``supervisely`` SDK, in :func:`read_supervisely`.
- **coco**, **yolo**, **voc**: parsed here. supervision's loaders raise at the first bad
  row or file (``ValueError``, ``ParseError``): nothing is read and nothing else is
  reported, where validation must list every problem of a dataset at once. They turn
  every polygon or segmentation into a full-image boolean mask and keep all of them
  (300 images of 640x640 px with three polygons each: +700 MB peak memory, 10x the time
  of the reader here; 50k such images would not fit in memory). And they get parts of
  these formats wrong for us. YOLO: the caller must name one images folder (data.yaml's
  train/val/test paths and ``.txt`` lists are not read); coordinates outside [0, 1] pass
  unnoticed; an image without a label file silently becomes a negative. COCO: the
  supercategory Roboflow adds (id 0, which no annotation uses) becomes a class; an
  annotation with an unknown category id fails the whole file; a missing image goes
  unnoticed. VOC: ``difficult`` and ``truncated`` are dropped; ``<filename>`` is ignored
  (images are matched by stem in one folder); every image is decoded just to read
  its size. Each case is a test in tests/unit/test_detector_formats.py. The formats are
  simple, so the parsers here are short.

Conventions for every format:

- Boxes are ``[x1, y1, x2, y2]`` in pixels, right/bottom exclusive. COCO's ``[x, y, w,
  h]`` and YOLO's normalised centres are continuous coordinates already. VOC's
  ``<bndbox>`` holds the devkit's 1-based inclusive pixel indices, read as Detectron2
  reads them (x1 = xmin - 1, x2 = xmax); a 0 written by a 0-based tool stays 0.
- Groups: the copies Roboflow makes of one photo (``<stem>_<ext>.rf.<hash>.<ext>``)
  share the group ``<stem>.<ext>``, so no split separates them; any other image is its
  own group.
- The export's own train/valid/test split is kept in ``tags["source_split"]``; it is not
  our split (validation splits by group).
- Crowd annotations (COCO ``iscrowd: 1``) mark a region of many insects, not one
  insect: they are not training targets, they are kept in ``tags["crowd"]`` and a
  warning says so. (torchvision detectors have no ignore regions, so the region still
  trains as background; a training step could skip images tagged ``crowd``.)
- VOC ``difficult`` boxes are training targets (an insect left unboxed would be taught
  as background); ``difficult`` and ``truncated`` boxes are kept in ``tags``.
- YOLO coordinates are fractions of the picture as shown; an image with boxes whose
  EXIF orientation turns it is a problem, since training reads the stored pixels.
- Class names are kept as written (:func:`class_name`).
- A user's data mistake (unknown class id, malformed row, YOLO values outside [0, 1],
  missing image, XML that does not parse, …) is a problem, one line per file naming
  it; the image is left out. Only "no labels here at all" is an :class:`InputFileError`.
"""

from __future__ import annotations

import json
import math
import os
import re
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

from insectml.detector.supervisely_io import IMAGE_SUFFIXES, ImageRecord, class_name, read_supervisely
from insectml.errors import ConfigError, InputFileError

FORMATS = ("supervisely", "coco", "yolo", "voc")

# Roboflow's export name of a copy of <stem>.<ext>: <stem>_<ext>.rf.<hash>.<ext>
_ROBOFLOW_COPY = re.compile(r"^(?P<stem>.+)_(?P<ext>[A-Za-z0-9]{2,5})\.rf\.[0-9A-Za-z]{6,}$")
_SPLIT_FOLDERS = {"train", "valid", "val", "test"}
_MAX_LINES_PER_FILE = 20  # problem lines of one COCO file (it may hold a whole dataset)


class LabelSet(NamedTuple):
    """What a reader found: classes in the export's order, one record per readable image,
    problems (one line each, naming the file) and warnings."""

    classes: list[str]
    records: list[ImageRecord]
    problems: list[str]
    warnings: list[str]


def detect_format(path: Path) -> str:
    """The format of the box labels at ``path`` (a folder or a file): ``supervisely`` (a
    meta.json), ``yolo`` (a YAML with ``names``), ``coco`` (a JSON with images and
    categories), ``voc`` (XML with an ``<annotation>`` root), checked in that order;
    an :class:`InputFileError` naming ``path`` otherwise."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "box labels not found")
    if path.is_file():
        if path.name == "meta.json":
            return "supervisely"
        if path.suffix.lower() in (".yaml", ".yml") and _yolo_yaml(path):
            return "yolo"
        if path.suffix.lower() == ".json" and _is_coco(path):
            return "coco"
        if path.suffix.lower() == ".xml" and _is_voc(path):
            return "voc"
        raise InputFileError(
            path,
            "not box labels insectml reads (a COCO JSON, a YOLO data.yaml, a Pascal VOC XML, a Supervisely meta.json)",
        )
    if (path / "meta.json").is_file():
        return "supervisely"
    if _yolo_yamls(path):
        return "yolo"
    if _coco_files(path):
        return "coco"
    if _voc_files(path):
        return "voc"
    raise InputFileError(
        path,
        "no box labels found: expected a Supervisely project (meta.json), a YOLO data.yaml with names, "
        "a COCO JSON (images, annotations, categories) or Pascal VOC XML files (Annotations/*.xml)",
    )


def locate_labels(path: Path, fmt: str = "auto") -> Path:
    """``path`` when it holds box labels (of format ``fmt``), else the one folder directly
    below it that does, so ``--detector_input`` may be an export itself or a folder holding
    one export beside the species folders. An :class:`InputFileError` when there are
    several (naming them) or, for ``auto``, none."""
    path = Path(path)
    if _holds(path, fmt):
        return path
    if path.is_dir():
        found = [sub for sub in sorted(path.iterdir()) if sub.is_dir() and _holds(sub, fmt)]
        if len(found) == 1:
            return found[0]
        if found:
            names = ", ".join(p.name for p in found)
            raise InputFileError(path, f"several box-label exports found ({names}); choose one with --detector_labels")
    if fmt == "auto":
        detect_format(path)  # raises, naming what was expected
    return path  # the reader of ``fmt`` names what is missing


def _holds(path: Path, fmt: str) -> bool:
    try:
        kind = detect_format(path)
    except InputFileError:
        return False
    return fmt in ("auto", kind)


def read_boxes(path: Path, fmt: str, root: Path) -> LabelSet:
    """Read the box labels at ``path`` in format ``fmt`` (``auto`` detects it); record
    paths are relative to ``root``. Never raises for a mistake inside the data (that is
    a problem line); raises :class:`InputFileError` when ``path`` holds no labels of
    that format."""
    path, root = Path(path), Path(root)
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt == "supervisely":
        classes, records, problems = read_supervisely(path.parent if path.is_file() else path, root)
        return LabelSet(classes, records, problems, [])
    readers = {"coco": _read_coco, "yolo": _read_yolo, "voc": _read_voc}
    if fmt not in readers:
        raise ConfigError(f"box-label format {fmt!r} unknown (choose from auto, {', '.join(FORMATS)})")
    return readers[fmt](path, root)


def source_group(image: Path, rel: str) -> str:
    """The split group of an image: Roboflow's copies of one photo share its name."""
    found = _ROBOFLOW_COPY.match(Path(image).stem)
    return f"{found['stem']}.{found['ext']}" if found else rel


# ---------------------------------------------------------------- YOLO


def _read_yolo(path: Path, root: Path) -> LabelSet:
    yaml_path = path if path.is_file() else _find_yolo_yaml(path)
    where = _shown(yaml_path, root)
    data = _yolo_yaml(yaml_path)
    if data is None:
        return LabelSet([], [], [f"{where}: not a YOLO data.yaml (unreadable YAML, or no 'names')"], [])
    names, problems = _yolo_names(data, where)
    warnings: list[str] = []
    base = yaml_path.parent
    if data.get("path"):
        given = Path(str(data["path"]))
        folder = given if given.is_absolute() else base / given
        if folder.is_dir():
            base = folder
        else:
            warnings.append(f"{where}: path {data['path']} is not a folder here; splits are read relative to data.yaml")
    images: dict[str, tuple[Path, str]] = {}
    twice: list[str] = []
    for key in ("train", "val", "test"):
        entries = data.get(key)
        for entry in entries if isinstance(entries, list) else [entries] if entries else []:
            found, list_problems = _yolo_split(base, yaml_path.parent, str(entry), root)
            problems += [f"{where}: {key}: {p}" for p in list_problems]
            if found is None:
                problems.append(f"{where}: {key}: {entry} not found (relative to {_shown(base, root)})")
                continue
            for image in found:
                key_path = os.path.abspath(image)
                if key_path in images:
                    twice.append(f"{image.name} ({images[key_path][1]} and {key})")
                else:
                    images[key_path] = (image, key)
    if not images and not problems:
        problems.append(f"{where}: no images under its train, val or test entries")
    if twice:
        warnings.append(f"{where}: {len(twice)} image(s) listed in two splits, read once: {_some(twice)}")
    kpt = data.get("kpt_shape")  # pose datasets: rows are the box, then K x D keypoint values
    ok = isinstance(kpt, list) and len(kpt) == 2 and all(isinstance(v, int) and v > 0 for v in kpt)
    pose_values = kpt[0] * kpt[1] if ok else 0

    records: list[ImageRecord] = []
    unlabelled: dict[str, list[str]] = defaultdict(list)
    for image, split in images.values():
        rel = _relative(image, root)
        if rel is None:
            problems.append(f"{image}: outside --root {root}")
            continue
        record = ImageRecord(path=rel, group=source_group(image, rel), tags={"source_split": split})
        label = _yolo_label_path(image)
        if not label.is_file():
            unlabelled[_relative(image.parent, root) or str(image.parent)].append(image.name)
            records.append(record)
            continue
        try:
            text = label.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{_shown(label, root)}: unreadable ({_short(exc)})")
            continue
        size, orientation = _image_header(image)
        if size is None:  # validation reports the unreadable image itself
            records.append(record)
            continue
        bad = _yolo_rows(text, names, size, pose_values, record)
        if record.boxes and orientation not in (None, 1):
            bad.insert(
                0,
                f"EXIF orientation {orientation}: YOLO boxes are relative to the turned picture, insectml reads "
                "the stored pixels; save the images upright (exiftran -ai, or Roboflow's auto-orient) and export again",
            )
        if bad:
            problems.append(
                f"{_shown(label, root)}: {bad[0]}" + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else "")
            )
            continue
        records.append(record)
    for folder, files in unlabelled.items():
        warnings.append(
            f"{folder}: {len(files)} image(s) without a label file, read as images without insects: {_some(files)}"
        )
    classes = list(dict.fromkeys(names.values()))
    return LabelSet(classes, records, problems, warnings)


def _yolo_yaml(path: Path) -> dict | None:
    """A YAML file's mapping if it has ``names`` (a YOLO data.yaml), else None."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) and "names" in data else None


def _yolo_yamls(folder: Path) -> list[Path]:
    candidates = sorted(p for pattern in ("*.yaml", "*.yml", "*/*.yaml", "*/*.yml") for p in folder.glob(pattern))
    return [p for p in candidates if _yolo_yaml(p) is not None]


def _find_yolo_yaml(folder: Path) -> Path:
    found = _yolo_yamls(folder)
    if not found:
        raise InputFileError(folder, "no YOLO data.yaml (a YAML file with 'names') here or one folder down")
    named = [p for p in found if p.name in ("data.yaml", "data.yml")]
    if len(named) == 1 or len(found) == 1:
        return (named or found)[0]
    raise InputFileError(folder, f"several YOLO YAML files ({_some([p.name for p in found])}); name one")


def _yolo_names(data: dict, where: str) -> tuple[dict[int, str], list[str]]:
    """Class id → name from ``names`` (a list, or a mapping {id: name} as Ultralytics
    writes it), and the problems with it."""
    raw, problems = data["names"], []
    if isinstance(raw, list):
        items = list(enumerate(raw))
    elif isinstance(raw, dict):
        items = []
        for key, value in raw.items():
            if isinstance(key, bool) or not str(key).strip().isdigit():
                problems.append(f"{where}: names key {key!r} is not a class id (0, 1, …)")
            else:
                items.append((int(str(key).strip()), value))
    else:
        return {}, [f"{where}: names must be a list or a mapping {{id: name}}, not {type(raw).__name__}"]
    names: dict[int, str] = {}
    for cid, value in items:
        if isinstance(value, (bool, float)) or value is None:
            # YAML reads unquoted yes/no/on/off/null and decimals as non-strings
            problems.append(f"{where}: names[{cid}] is read as {value!r}, not a name; quote it")
        elif not class_name(str(value)):
            problems.append(f"{where}: names[{cid}] is empty")
        else:
            names[cid] = class_name(str(value))
    doubled = sorted({n for n in names.values() if list(names.values()).count(n) > 1})
    if doubled:
        problems.append(f"{where}: names repeats {', '.join(doubled)} under two class ids")
    nc = data.get("nc")
    if nc is not None and nc != len(items):
        problems.append(f"{where}: nc is {nc} but names lists {len(items)} classes")
    return names, problems


def _yolo_split(base: Path, yaml_dir: Path, entry: str, root: Path) -> tuple[list[Path] | None, list[str]]:
    """The images of one train/val/test entry: a folder (searched recursively) or a
    ``.txt`` list of image paths; None when it is neither. Relative entries are read
    against data.yaml's ``path``, then data.yaml's folder; ``../x`` that is not there is
    also tried as ``x``, as Ultralytics does for Roboflow's data.yaml."""
    given = Path(entry)
    candidates = [given] if given.is_absolute() else [base / given, yaml_dir / given]
    if entry.startswith("../"):
        candidates.append(base / entry[3:])
    for candidate in candidates:
        if candidate.is_dir():
            return sorted(p for p in candidate.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()), []
        if candidate.is_file():
            return _image_list(candidate, base, root)
    return None, []


def _image_list(listing: Path, base: Path, root: Path) -> tuple[list[Path], list[str]]:
    """Image paths listed one per line; relative ones against the list's folder, then ``base``."""
    try:
        lines = listing.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        return [], [f"{_shown(listing, root)}: unreadable ({_short(exc)})"]
    images, missing = [], []
    for line in (x.strip() for x in lines):
        if not line:
            continue
        given = Path(line)
        candidates = [given] if given.is_absolute() else [listing.parent / given, base / given]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            missing.append(line)
        else:
            images.append(found)
    problems = (
        [f"{_shown(listing, root)}: {len(missing)} listed image(s) not found: {_some(missing)}"] if missing else []
    )
    return images, problems


def _yolo_label_path(image: Path) -> Path:
    """Ultralytics' rule: the last ``/images/`` of the path becomes ``/labels/``, the
    suffix ``.txt``; with no ``images`` folder the label lies beside the image."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def _yolo_rows(
    text: str, names: dict[int, str], size: tuple[int, int], pose_values: int, record: ImageRecord
) -> list[str]:
    """Add the boxes of a label file's rows to ``record``; returns what is wrong, one
    line per bad row. Rows are ``class cx cy w h`` or a polygon ``class x1 y1 x2 y2 …``
    (its bounding box), all fractions of the image size."""
    width, height = size
    bad = []
    for number, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        if pose_values and len(tokens) == 5 + pose_values:
            tokens = tokens[:5]  # a pose row: the box, then keypoints
        try:
            values = [float(t) for t in tokens]
        except ValueError:
            bad.append(f"line {number}: not numbers ({line.strip()[:40]!r})")
            continue
        coords = values[1:]
        if not all(math.isfinite(v) for v in values) or not values[0].is_integer():
            bad.append(f"line {number}: class id {tokens[0]} is not a whole number, or a value is not finite")
            continue
        if len(coords) != 4 and (len(coords) < 6 or len(coords) % 2):
            bad.append(
                f"line {number}: {len(tokens)} values; expected 'class cx cy w h' or 'class x1 y1 x2 y2 x3 y3 …'"
            )
            continue
        cid = int(values[0])
        if cid not in names:
            known = f"0-{max(names)}" if names else "none"
            bad.append(f"line {number}: class id {cid} is not in data.yaml names ({known})")
            continue
        if any(v < 0 or v > 1 for v in coords):
            bad.append(f"line {number}: values outside [0, 1]; YOLO coordinates are fractions of the image size")
            continue
        if len(coords) == 4:
            cx, cy, w, h = coords
            box = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
        else:
            xs, ys = coords[0::2], coords[1::2]
            box = [min(xs), min(ys), max(xs), max(ys)]
        record.boxes.append([_px(box[0] * width), _px(box[1] * height), _px(box[2] * width), _px(box[3] * height)])
        record.labels.append(names[cid])
    return bad


# ---------------------------------------------------------------- COCO


def _read_coco(path: Path, root: Path) -> LabelSet:
    files = [path] if path.is_file() else _coco_files(path)
    if not files:
        raise InputFileError(path, "no COCO JSON (images, annotations, categories) here or two folders down")
    classes: dict[str, None] = {}
    records: dict[str, ImageRecord] = {}
    problems: list[str] = []
    warnings: list[str] = []
    crowd, twice, groupings = 0, [], {}
    for file in files:
        where = _shown(file, root)
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            problems.append(f"{where}: not readable JSON ({_short(exc)})")
            continue
        if not _coco_shape(data):
            problems.append(f"{where}: not a COCO instances file (needs the lists images and categories)")
            continue
        lines: list[str] = []
        annotations = data.get("annotations") or []
        categories = _coco_categories(data["categories"], annotations, lines, groupings)
        classes.update(dict.fromkeys(categories.values()))
        split = _coco_split(file)
        images, gone = {}, set()
        for entry in data["images"]:
            image_id = _key(entry.get("id")) if isinstance(entry, dict) else None
            file_name = entry.get("file_name") if isinstance(entry, dict) else None
            if image_id is None or not isinstance(file_name, str) or image_id in images or image_id in gone:
                lines.append(f"image entry {str(entry)[:60]}: needs a unique id and a file_name")
                gone.add(image_id)
                continue
            image = _coco_image_path(file, file_name, split)
            rel = _relative(image, root) if image else None
            if rel is None:
                why = f"outside --root {root}" if image else f"not found (next to {where} or in its split folder)"
                lines.append(f"image {image_id} {file_name!r}: {why}")
                gone.add(image_id)
                continue
            width, height = entry.get("width"), entry.get("height")
            sized = isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0
            tags = {"source_split": split} if split else {}
            images[image_id] = ImageRecord(
                path=rel, group=source_group(image, rel), tags=tags, declared_size=(width, height) if sized else None
            )
        broken = set()
        for ann in annotations:
            if not isinstance(ann, dict):
                lines.append(f"annotation {str(ann)[:40]}: not an object")
                continue
            image_id, category_id, what = (
                _key(ann.get("image_id")),
                _key(ann.get("category_id")),
                f"annotation {ann.get('id')}",
            )
            if image_id is not None and image_id in gone:
                continue
            if image_id not in images:
                lines.append(f"{what}: image_id {ann.get('image_id')} is not among images")
                continue
            box = _coco_box(ann.get("bbox"))
            if category_id not in categories:
                lines.append(
                    f"{what}: category_id {ann.get('category_id')} is not among categories ({_ids(categories)})"
                )
            elif box is None:
                lines.append(f"{what}: bbox {ann.get('bbox')} is not [x, y, width, height] with width, height >= 0")
            else:
                record, label = images[image_id], categories[category_id]
                if ann.get("iscrowd"):
                    record.tags.setdefault("crowd", []).append({"label": label, "box": box})
                    crowd += 1
                else:
                    record.boxes.append(box)
                    record.labels.append(label)
                continue
            broken.add(image_id)
        problems += [f"{where}: {line}" for line in lines[:_MAX_LINES_PER_FILE]]
        if len(lines) > _MAX_LINES_PER_FILE:
            problems.append(f"{where}: … and {len(lines) - _MAX_LINES_PER_FILE} more problems")
        for image_id, record in images.items():
            if image_id in broken:
                continue
            if record.path in records:
                twice.append(record.path)
            else:
                records[record.path] = record
    for name, ids in groupings.items():
        warnings.append(
            f"category {name!r} (id {', '.join(map(str, sorted(ids, key=str)))}) only groups the others (their supercategory); not a class"
        )
    if crowd:
        warnings.append(
            f"{crowd} crowd annotation(s) (iscrowd: 1) are not training targets: a crowd box covers many insects, "
            "not one; they are kept in the manifest's tags 'crowd'"
        )
    if twice:
        warnings.append(f"{len(twice)} image(s) listed in two COCO files, read once: {_some(twice)}")
    return LabelSet(list(classes), list(records.values()), problems, warnings)


def _coco_shape(data: object) -> bool:
    return (
        isinstance(data, dict)
        and isinstance(data.get("images"), list)
        and isinstance(data.get("categories"), list)
        and isinstance(data.get("annotations", []), list)
    )


def _is_coco(path: Path) -> bool:
    if path.name == "_annotations.coco.json" or path.name.startswith("instances_"):
        return True
    try:
        return _coco_shape(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False


def _coco_files(folder: Path) -> list[Path]:
    """COCO instance files in ``folder`` and two folders down (Roboflow's
    ``<split>/_annotations.coco.json``, COCO's ``annotations/instances_*.json``; where
    ``instances_*`` exist, the keypoint and caption files beside them are not read)."""
    found = sorted(p for pattern in ("*.json", "*/*.json", "*/*/*.json") for p in folder.glob(pattern))
    found = [p for p in found if p.name != "meta.json" and _is_coco(p)]
    instances = [p for p in found if p.name.startswith("instances_")]
    return instances or found


def _coco_categories(categories: list, annotations: list, lines: list, groupings: dict) -> dict:
    """Category id → class name. A category that another one names as its supercategory
    and that no annotation uses (Roboflow's "insects", id 0) is a grouping, not a class:
    it goes into ``groupings`` (name → ids) instead."""
    used = {_key(a.get("category_id")) for a in annotations if isinstance(a, dict)}
    entries = [c for c in categories if isinstance(c, dict)]
    out: dict = {}
    for c in entries:
        cid, name = _key(c.get("id")), class_name(str(c.get("name") or ""))
        if cid is None or not name or cid in out:
            lines.append(f"category {str(c)[:60]}: needs a unique id and a name")
            continue
        parent_of_others = any(o is not c and class_name(str(o.get("supercategory") or "")) == name for o in entries)
        if parent_of_others and cid not in used:
            groupings.setdefault(name, set()).add(cid)
            continue
        out[cid] = name
    return out


def _coco_split(file: Path) -> str:
    """The export's split: Roboflow's folder (train/_annotations.coco.json), COCO's file
    name (instances_val2017.json), or a split-named folder."""
    if file.name == "_annotations.coco.json" or file.parent.name in _SPLIT_FOLDERS:
        return file.parent.name
    if file.stem.startswith("instances_"):
        return file.stem[len("instances_") :]
    return ""


def _coco_image_path(file: Path, file_name: str, split: str) -> Path | None:
    given = Path(file_name)
    if given.is_absolute():
        return given if given.is_file() else None
    here = file.parent
    candidates = [here / given, here / "images" / given, here.parent / given]
    if split:
        candidates += [here.parent / split / given, here.parent / "images" / split / given]
    return next((c for c in candidates if c.is_file()), None)


def _coco_box(bbox: object) -> list[float] | None:
    if not isinstance(bbox, list) or len(bbox) != 4:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox):
        return None
    x, y, w, h = bbox
    return [_px(x), _px(y), _px(x + w), _px(y + h)] if w >= 0 and h >= 0 else None


def _key(value: object) -> int | str | None:
    """An id as JSON gives it, if it can be one (a number or a string; not a list, not true)."""
    return value if isinstance(value, (int, str)) and not isinstance(value, bool) else None


def _ids(categories: dict) -> str:
    return ", ".join(str(c) for c in categories) or "none"


# ---------------------------------------------------------------- Pascal VOC


def _read_voc(path: Path, root: Path) -> LabelSet:
    xmls = [path] if path.is_file() else _voc_files(path)
    if not xmls:
        raise InputFileError(path, "no Pascal VOC XML (<annotation>) here (Annotations/*.xml or *.xml below)")
    splits = _voc_image_sets(path if path.is_dir() else path.parent)
    classes: set[str] = set()
    records: list[ImageRecord] = []
    problems: list[str] = []
    labelled: set[str] = set()
    for xml in xmls:
        where = _shown(xml, root)
        try:
            annotation = ET.parse(xml).getroot()
        except (ET.ParseError, OSError) as exc:
            annotation, problem = None, f"{where}: XML does not parse ({_short(exc)})"
        else:
            problem = f"{where}: root element is <{annotation.tag}>, not <annotation>"
        if annotation is None or annotation.tag != "annotation":
            problems.append(problem)
            # its image has labels we could not read: not a negative
            if (image := _voc_image_path(xml, "")) is not None:
                labelled.add(os.path.abspath(image))
            continue
        file_name = (annotation.findtext("filename") or "").strip()
        image = _voc_image_path(xml, file_name)
        rel = _relative(image, root) if image else None
        if rel is None:
            why = f"outside --root {root}" if image else "not found (beside the XML or in ../JPEGImages)"
            problems.append(f"{where}: image {file_name or xml.stem!r} {why}")
            continue
        if os.path.abspath(image) in labelled:
            problems.append(f"{where}: image {rel} is named by another XML too")
            continue
        labelled.add(os.path.abspath(image))
        width, height = _int(annotation.findtext("size/width")), _int(annotation.findtext("size/height"))
        split = splits.get(image.stem) or (image.parent.name if image.parent.name in _SPLIT_FOLDERS else "")
        record = ImageRecord(
            path=rel,
            group=source_group(image, rel),
            tags={"source_split": split} if split else {},
            declared_size=(width, height) if width and height else None,
        )
        bad = _voc_objects(annotation, record)
        if bad:
            problems.append(f"{where}: {bad[0]}" + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""))
            continue
        classes.update(record.labels)
        records.append(record)
    warnings = _voc_unlabelled(records, labelled, splits, root)
    return LabelSet(sorted(classes), records, problems, warnings)


def _voc_objects(annotation: ET.Element, record: ImageRecord) -> list[str]:
    """Add each ``<object>``'s box to ``record``; its difficult / truncated flags go into
    ``record.tags``. Returns what is wrong, one line per bad object."""
    bad = []
    for number, obj in enumerate(annotation.findall("object"), start=1):
        name = class_name(obj.findtext("name") or "")
        corners = [_float(obj.findtext(f"bndbox/{tag}")) for tag in ("xmin", "ymin", "xmax", "ymax")]
        if not name:
            bad.append(f"object {number}: no <name>")
            continue
        if any(v is None for v in corners):
            bad.append(f"object {number} ({name}): <bndbox> needs numeric xmin, ymin, xmax, ymax")
            continue
        xmin, ymin, xmax, ymax = corners
        # the devkit's 1-based inclusive indices; a 0 can only come from a 0-based tool
        box = [_px(xmin - 1 if xmin >= 1 else xmin), _px(ymin - 1 if ymin >= 1 else ymin), _px(xmax), _px(ymax)]
        record.boxes.append(box)
        record.labels.append(name)
        for flag in ("difficult", "truncated"):
            if (obj.findtext(flag) or "").strip() == "1":
                record.tags.setdefault(flag, []).append({"label": name, "box": box})
    return bad


def _is_voc(path: Path) -> bool:
    try:
        for _, element in ET.iterparse(path, events=("start",)):
            return element.tag == "annotation"
    except (ET.ParseError, OSError):
        return False
    return False


def _voc_files(folder: Path) -> list[Path]:
    """The devkit's ``Annotations/*.xml``, or else every ``*.xml`` below ``folder`` (XML
    beside the images, as LabelImg and Roboflow write them), if the first is VOC."""
    found = sorted((folder / "Annotations").rglob("*.xml")) or sorted(folder.rglob("*.xml"))
    return found if found and _is_voc(found[0]) else []


def _voc_image_sets(folder: Path) -> dict[str, str]:
    """Image stem → split from the devkit's ``ImageSets/Main/{train,val,test}.txt``."""
    out: dict[str, str] = {}
    for split in ("train", "val", "test"):
        listing = folder / "ImageSets" / "Main" / f"{split}.txt"
        if listing.is_file():
            for line in listing.read_text(encoding="utf-8", errors="replace").split():
                out.setdefault(line, split)
    return out


def _voc_image_path(xml: Path, file_name: str) -> Path | None:
    """The XML's ``<filename>`` beside it or in ``../JPEGImages``; failing that, an image
    with the XML's stem in either place (``<filename>`` may name the file before renaming)."""
    places = [xml.parent, xml.parent.parent / "JPEGImages"]
    if file_name:
        for place in places:
            if (place / file_name).is_file():
                return place / file_name
    for place in places:
        for suffix in sorted(IMAGE_SUFFIXES):
            for candidate in (place / f"{xml.stem}{suffix}", place / f"{xml.stem}{suffix.upper()}"):
                if candidate.is_file():
                    return candidate
    return None


def _voc_unlabelled(records: list[ImageRecord], labelled: set[str], splits: dict[str, str], root: Path) -> list[str]:
    """Images without an XML in the folders that hold labelled images: negatives, with a
    warning per folder."""
    warnings = []
    for folder in sorted({os.path.dirname(p) for p in labelled}):
        files = sorted(
            p
            for p in Path(folder).iterdir()
            if p.suffix.lower() in IMAGE_SUFFIXES and os.path.abspath(p) not in labelled
        )
        for image in files:
            rel = _relative(image, root)
            if rel is not None:
                split = splits.get(image.stem) or (image.parent.name if image.parent.name in _SPLIT_FOLDERS else "")
                tags = {"source_split": split} if split else {}
                records.append(ImageRecord(path=rel, group=source_group(image, rel), tags=tags))
        if files:
            shown = _relative(Path(folder), root) or folder
            warnings.append(
                f"{shown}: {len(files)} image(s) without an XML, read as images without insects: "
                f"{_some([f.name for f in files])}"
            )
    return warnings


# ---------------------------------------------------------------- shared


def _relative(path: Path, root: Path) -> str | None:
    """``path`` relative to ``root`` (POSIX), or None when it lies outside. Lexical first,
    so a symlinked file (a DVC cache link) counts where it appears; then resolved, so a
    symlinked root (a Nextflow stage link) matches its target."""
    try:
        return Path(os.path.abspath(path)).relative_to(os.path.abspath(root)).as_posix()
    except ValueError:
        pass
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except (ValueError, OSError):
        return None


def _shown(path: Path, root: Path) -> str:
    return _relative(path, root) or str(path)


def _image_header(path: Path) -> tuple[tuple[int, int] | None, int | None]:
    """(width, height) and the EXIF orientation from the file's header, without decoding."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.size, image.getexif().get(0x0112)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError):
        return None, None


def _px(value: float) -> float:
    """A coordinate in pixels, rounded to 1/1000 px (normalised coordinates carry float noise)."""
    return round(float(value), 3) + 0.0


def _float(text: str | None) -> float | None:
    try:
        value = float((text or "").strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _int(text: str | None) -> int | None:
    value = _float(text)
    return int(value) if value and value > 0 and value.is_integer() else None


def _some(items: list[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (f", … ({len(items) - n} more)" if len(items) > n else "")


def _short(exc: Exception) -> str:
    return " ".join(str(exc).split())[:160] or type(exc).__name__

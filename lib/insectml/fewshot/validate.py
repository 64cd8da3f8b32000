"""Read a few-shot image set (folder per class, or a CSV manifest), check every image,
and split it twice, seeded: by class (base classes to train on; novel classes for
validation and test, never seen in training) and, inside each novel class, by image
(support images make the prototype; query images are classified).

Every image is its own group, except near-duplicates within a class (dHash), which are
grouped under ``duplicates="group"`` so they fall on one side of the support/query cut
(``drop`` keeps one of them, ``error`` refuses them). The same bytes under two classes are a
label conflict (a problem); near-duplicates across classes are a warning.

Three steps, so that decoding every image can be scattered over tasks:
:func:`list_candidates` reads the folders or the CSV (candidates.jsonl, listing.json);
:func:`check_candidates` checks the images of a chunk of them (checked.jsonl);
:func:`gather` settles conflicts and duplicates, reports every problem at once and
splits. :func:`validate_fewshot` runs the three in one process.

A labelled active-learning export (``extra_labels``: :func:`check_extra_labels`) is merged
by the gather after the classes are split: its rows join the training classes (a class the
data lacks becomes one), never a held-out class."""

from __future__ import annotations

import csv
import logging
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from insectml.data.chunks import CANDIDATES, CHECKED, LISTING, checked_rows, in_one_process, read_listing  # noqa: F401 - the step files, for the CLI
from insectml.data.duplicates import near_pairs, resolve
from insectml.data.images import check_image
from insectml.data.manifest import content_version, file_digest, iter_manifest, write_manifest
from insectml.errors import ConfigError, InputFileError, ValidationFailed
from insectml.fewshot.family import PARAMS as P
from insectml.fileio import write_json_atomic
from insectml.lineage import active_learning_rounds, data_source
from insectml.runparams import GENERAL

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class FewshotValidateConfig:
    root: Path  # manifest paths are relative to it
    out_dir: Path
    images: Path | None = None  # <class>/<image> folders
    labels: Path | None = None  # CSV with path,label (paths relative to root)
    val_fraction: float = P.default("fewshot_val_fraction")  # share of classes held out for validation (novel)
    test_fraction: float = P.default("fewshot_test_fraction")  # share of classes held out for test (novel)
    support: int = P.default("fewshot_support")  # support images per novel class (at most n − 1)
    max_classes: int = P.default("fewshot_max_classes")  # keep at most N classes, seeded (0 = all)
    seed: int = GENERAL.default("seed")
    near_duplicate_bits: int = P.default("fewshot_near_duplicate_bits")  # dHash distance of near-duplicates
    duplicates: str = GENERAL.default("duplicates")  # group | drop | error
    extra_labels: Path | None = None  # a labelled active-learning export: its rows join train (gather step)


def _read(cfg: FewshotValidateConfig) -> tuple[list[dict], list[str]]:
    rows, problems = [], []
    if cfg.labels is not None:
        if not cfg.labels.is_file():
            raise InputFileError(cfg.labels, "labels file not found")
        # UTF-8 whatever the locale: class names such as "Anophèles" must read the same everywhere;
        # utf-8-sig: spreadsheets save "CSV UTF-8" with a byte-order mark before the header.
        seen: dict[str, int] = {}
        try:
            with cfg.labels.open(newline="", encoding="utf-8-sig") as fh:
                reader = csv.DictReader(fh)
                missing = {"path", "label"} - set(reader.fieldnames or [])
                if missing:
                    raise InputFileError(cfg.labels, f"missing column(s) {', '.join(sorted(missing))}")
                for rec in reader:
                    line, path = reader.line_num, (rec["path"] or "").strip()
                    if not path:
                        problems.append(f"{cfg.labels}:{line}: empty path")
                        continue
                    if _escapes(path):
                        problems.append(
                            f"{cfg.labels}:{line}: path '{path}' leads outside --root (absolute, or with '..')"
                        )
                        continue
                    if not (rec["label"] or "").strip():
                        problems.append(f"{cfg.labels}:{line}: empty label")
                        continue
                    if path in seen:
                        problems.append(f"{cfg.labels}:{line}: '{path}' is listed twice (first at line {seen[path]})")
                        continue
                    seen[path] = line
                    rows.append({"path": path, "label": unicodedata.normalize("NFC", rec["label"].strip())})
        except UnicodeDecodeError:
            raise InputFileError(cfg.labels, "not a UTF-8 text CSV file") from None
        except csv.Error as exc:
            raise InputFileError(cfg.labels, f"malformed CSV ({exc})") from None
    else:
        for folder in sorted(p for p in cfg.images.iterdir() if p.is_dir()):
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                problems.append(f"{folder}: class '{folder.name}' has no images")
            # NFC: a folder copied from macOS spells "è" as e + accent; the CSV and the user, as one letter.
            label = unicodedata.normalize("NFC", folder.name)
            rows += [{"path": str(f.relative_to(cfg.root)), "label": label} for f in files]
        if not rows and not problems:
            problems.append(f"{cfg.images}: no <class>/<image> folders found")
    return rows, problems


def _escapes(path: str) -> bool:
    """Whether a CSV row's ``path`` leads outside the root it is relative to: absolute, or
    with a ``..`` part. (Symbolic links below the root are the user's own layout and are
    followed.)"""
    return Path(path).is_absolute() or ".." in Path(path).parts


def validate_fewshot(cfg: FewshotValidateConfig) -> dict:
    """Write manifest.jsonl, dataset.json, validation_report.json; every problem at once:
    :func:`list_candidates`, :func:`check_candidates` and :func:`gather` in one process,
    so the files are byte-identical to those of the steps run as chunks over several tasks."""
    _check_fractions(cfg)  # before opening a single image
    return in_one_process(cfg, list_candidates, check_candidates, gather)


# The setting the list step draws the --max-classes subset with and the gather replays
# the draw with: both must have the same. (A listing of every class may still be capped
# by the gather itself.)
_LISTED_SETTINGS = {"seed": "--seed"}


def list_candidates(cfg: FewshotValidateConfig) -> dict:
    """Step 1: read the class folders or the CSV without opening an image; write the rows,
    numbered from 0, to ``cfg.out_dir/candidates.jsonl`` and the listing (source, counts,
    problems) to ``listing.json``; returns the listing. Reads root, images and labels of
    ``cfg``."""
    if (cfg.images is None) == (cfg.labels is None):
        raise ConfigError("give either --images (folder per class) or --labels (CSV path,label)")
    rows, problems = _read(cfg)
    listing = {
        "source": str(cfg.images or cfg.labels),
        "root": str(cfg.root.resolve()),  # for the dataset's source; the gather may run without it
        "problems": problems,
        "settings": {k: getattr(cfg, k) for k in _LISTED_SETTINGS},
    }
    classes = sorted({row["label"] for row in rows})
    if cfg.max_classes and len(classes) > cfg.max_classes:
        # Only the kept classes' images are checked; the gather replays this draw (see there).
        keep = set(_draw_classes(np.random.default_rng(cfg.seed), classes, cfg.max_classes))
        rows = [row for row in rows if row["label"] in keep]
        listing["capped_from"] = classes
    listing["candidates"] = len(rows)
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    write_manifest(({"n": n, **row} for n, row in enumerate(rows)), cfg.out_dir / CANDIDATES)
    write_json_atomic(cfg.out_dir / LISTING, listing)
    return listing


def check_candidates(candidates: Path, cfg: FewshotValidateConfig, out: Path) -> tuple[int, int]:
    """Step 2, over a chunk of candidates.jsonl (or all of it): decode each image below
    ``cfg.root`` (:func:`check_image`) and take its md5 and dHash. Writes one line per
    candidate, in order, to ``out``: ``{"n", "path", "label", "md5", "dhash"}``, or
    ``{"n", "path", "label", "problem"}``. Returns (candidates, problems). Reads root of ``cfg``."""
    from tqdm import tqdm

    problems = 0

    def checked() -> Iterator[dict]:
        nonlocal problems
        for number, row in enumerate(iter_manifest(candidates, "candidates file", allow_empty=True), start=1):
            if not isinstance(row, dict) or not {"n", "path", "label"} <= row.keys():
                raise InputFileError(candidates, f"line {number} is not a candidate (from 'validate --list-only')")
            path = cfg.root / row["path"]
            if not path.is_file():
                problem = f"{row['path']}: file not found"
            else:
                _size, hashed, problem = check_image(path, row["path"])
            if problem:
                problems += 1
                yield {**row, "problem": problem}
                continue
            yield {**row, "md5": file_digest(path), "dhash": hashed}

    out.parent.mkdir(parents=True, exist_ok=True)
    n = write_manifest(tqdm(checked(), desc="validate", unit="img", disable=None), out)
    return n, problems


def gather(listing_path: Path, checked: Sequence[Path], cfg: FewshotValidateConfig) -> dict:
    """Step 3: read the checked chunks (in any order; each must be there once) and the
    listing; refuse label conflicts, settle near-duplicates by ``cfg.duplicates``, count
    the classes and write validation_report.json; with no problem, split the classes
    (base / novel) and the novel classes' images by group (support / query), and write
    manifest.jsonl and dataset.json into ``cfg.out_dir``. Returns the dataset description.

    Raises :class:`ValidationFailed` listing every problem of every step at once."""
    _check_fractions(cfg)
    listing = read_listing(listing_path, {"source", "candidates", "problems"}, cfg, _LISTED_SETTINGS)
    problems = list(listing["problems"])
    rows: list[dict] = []
    digests: dict[str, str] = {}
    checked_ok, hashes = [], []
    for found in checked_rows(checked, listing["candidates"]):
        row = {"path": found["path"], "label": found["label"]}
        rows.append(row)
        if "problem" in found:
            problems.append(found["problem"])
            continue
        row["md5"] = found["md5"]
        if row["md5"] in digests and digests[row["md5"]] != row["label"]:
            problems.append(f"{row['path']}: same bytes as an image of class '{digests[row['md5']]}' (label conflict)")
        digests.setdefault(row["md5"], row["label"])
        checked_ok.append(row)
        hashes.append(found["dhash"])
    if len(rows) != listing["candidates"]:
        raise InputFileError(
            listing_path,
            f"lists {listing['candidates']} candidates; the checked files hold {len(rows)}: a chunk is missing",
        )
    dup_problems, warnings, dropped, merged = _duplicates(checked_ok, hashes, cfg)
    problems += dup_problems
    rows = [r for r in rows if id(r) not in dropped]
    counts: dict[str, int] = {}
    groups: dict[str, set[str]] = {}
    for row in rows:
        counts[row["label"]] = counts.get(row["label"], 0) + 1
        groups.setdefault(row["label"], set()).add(row.get("group", row["path"]))
    problems += [
        f"class '{c}' has 1 image; at least 2 are needed (support + query)" for c, n in sorted(counts.items()) if n < 2
    ]
    problems += [
        f"class '{c}': its {counts[c]} images are all near-duplicates of each other (one group); support and query "
        "need images from at least 2"
        for c, gs in sorted(groups.items())
        if len(gs) < 2 <= counts[c]
    ]
    classes = sorted(counts)
    if len(classes) < 10 and not problems:
        problems.append(f"only {len(classes)} classes; a class-disjoint split needs at least 10")
    extra, extra_report = [], None
    if cfg.extra_labels is not None:
        extra, extra_problems, extra_warnings, extra_report = check_extra_labels(cfg.extra_labels, rows)
        problems += extra_problems
        warnings += extra_warnings
    report = {"rows": len(rows), "classes": len(classes), "problems": problems, "warnings": warnings}
    if extra_report is not None:
        report["extra_labels"] = extra_report
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(cfg.out_dir / "validation_report.json", report)
    for line in warnings[:5]:
        log.warning("%s", line)
    if len(warnings) > 5:
        log.warning("… %d more warnings in %s", len(warnings) - 5, cfg.out_dir / "validation_report.json")
    if problems:
        raise ValidationFailed(listing["source"], problems, cfg.out_dir / "validation_report.json")

    rng = np.random.default_rng(cfg.seed)
    if "capped_from" in listing:
        # the list step drew the kept classes from this generator; draw them again so the
        # class split below is the one an uncapped listing would give
        _draw_classes(rng, listing["capped_from"], len(classes))
    elif cfg.max_classes and len(classes) > cfg.max_classes:
        classes = _draw_classes(rng, classes, cfg.max_classes)
        rows = [r for r in rows if r["label"] in set(classes)]
    order = rng.permutation(len(classes))
    n_test = max(2, round(cfg.test_fraction * len(classes)))
    n_val = max(2, round(cfg.val_fraction * len(classes)))
    role = {}
    for rank, i in enumerate(order):
        role[classes[i]] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    by_class: dict[str, list[dict]] = {}
    for row in sorted(rows, key=lambda r: r["path"]):
        by_class.setdefault(row["label"], []).append(row)
    out = []
    for c in classes:
        for member, support in support_query(by_class[c], cfg.support, rng):
            row = dict(member)
            row["id"] = row["path"]
            row["split"] = role[c]
            row["subset"] = "train" if role[c] == "train" else ("support" if support else "query")
            out.append(row)
    if cfg.extra_labels is not None:
        extra, held_out = _training_side(extra, role)
        out += extra
        if held_out:
            report["warnings"] += held_out
            report["extra_labels"].update(merged=len(extra), held_out_classes=len(held_out))
            write_json_atomic(cfg.out_dir / "validation_report.json", report)
            log.warning("%d active-learning row(s) of held-out classes left out: %s", len(held_out), held_out[0])
        new_classes = sorted({r["label"] for r in extra} - set(classes))
        role.update(dict.fromkeys(new_classes, "train"))
        classes = sorted([*classes, *new_classes])
    write_manifest(out, cfg.out_dir / "manifest.jsonl")
    split_classes = {s: sorted(c for c in classes if role[c] == s) for s in ("train", "val", "test")}
    dataset = {
        "family": "fewshot",
        "classes": classes,
        "n_images": len(out),
        "classes_per_split": {s: len(v) for s, v in split_classes.items()},
        "images_per_split": {s: sum(1 for r in out if r["split"] == s) for s in ("train", "val", "test")},
        "split_classes": split_classes,
        "version": content_version(
            {"id": r["id"], "label": r["label"], "group": r["subset"], "split": r["split"], "md5": r["md5"]}
            for r in out
        ),
        "split": {
            "seed": cfg.seed,
            "val_fraction": cfg.val_fraction,
            "test_fraction": cfg.test_fraction,
            "support": cfg.support,
            "duplicates": cfg.duplicates,
            "near_duplicate_bits": cfg.near_duplicate_bits,
            "groups_merged": merged,
            "duplicates_dropped": len(dropped),
        },
        "source": data_source(
            listing.get("root", str(cfg.root)), ((r["path"], r["md5"]) for r in out if "provenance" not in r)
        ),
    }
    if cfg.extra_labels is not None:
        dataset["active_learning"] = active_learning_rounds(extra, Path(cfg.extra_labels).resolve())
        dataset["source"]["active_learning"] = dataset["active_learning"]  # so every model's lineage has it
    write_json_atomic(cfg.out_dir / "dataset.json", dataset)
    log.info("%d images, %d classes: %s", len(out), len(classes), dataset["classes_per_split"])
    return dataset


def check_extra_labels(export: Path, rows: list[dict]) -> tuple[list[dict], list[str], list[str], dict]:
    """The labelled items of the active-learning export ``export``
    (:func:`insectml.active.merge.read_labelled_export`; a class the data lacks is accepted:
    a new class) as manifest rows of the train split, each image checked like the data's,
    its ``provenance`` kept and its path absolute (it lies outside the data folder).

    Returns (rows, problems, warnings, a summary for the report). A problem: an image that
    fails the checks, the same bytes as a data image of another class. An image identical
    to one of the data (``rows``) is left out with a warning: the data's own split keeps it.
    Which rows may join training (not those of held-out classes) is
    :func:`_training_side`'s, once the classes are split."""
    from insectml.active.merge import read_labelled_export

    export = Path(export).resolve()
    labelled = read_labelled_export(export, "fewshot")
    in_data = {r["md5"]: r for r in rows if "md5" in r}
    out, problems, warnings = [], [], []
    for item in labelled:
        path = export / item["path"]
        _size, _hashed, problem = check_image(path, str(path))
        if problem:
            problems.append(problem)
            continue
        twin = in_data.get(item["md5"])
        if twin is not None:
            if twin["label"] != item["label"]:
                problems.append(f"{path}: same bytes as {twin['path']} of class '{twin['label']}' (label conflict)")
            else:
                warnings.append(
                    f"{path}: identical to {twin['path']} of the data; left out (the data's split keeps it)"
                )
            continue
        out.append(
            {
                "id": item["id"],
                "path": str(path),
                "label": item["label"],
                "md5": item["md5"],
                "group": item["group"],
                "split": "train",
                "subset": "train",
                "provenance": item["provenance"],
            }
        )
    summary = {"export": str(export), "merged": len(out), "skipped": labelled.skipped}
    summary["new_classes"] = sorted({r["label"] for r in out} - {r["label"] for r in rows})
    return out, problems, warnings, summary


def _training_side(extra: list[dict], role: dict[str, str]) -> tuple[list[dict], list[str]]:
    """The active-learning rows that may join training: those of a training class or of a
    class the data lacks; a row of a class held out for validation or test is left out (a
    warning each), so those classes stay unseen in training. Returns (rows, warnings)."""
    kept, warnings = [], []
    for row in extra:
        held = role.get(row["label"], "train")
        if held != "train":
            warnings.append(
                f"{row['path']}: class '{row['label']}' is held out for {held}; left out, so it stays unseen in training"
            )
            continue
        kept.append(row)
    return kept, warnings


def support_query(members: list[dict], n_support: int, rng: np.random.Generator) -> list[tuple[dict, bool]]:
    """One class's rows (each with a ``group``) in a random order drawn from ``rng``, each
    with whether it is a support image: up to ``n_support`` images (at most all but one),
    at least one group of queries. The cut is made by group, so near-duplicates stay on one
    side; with every image its own group this is the cut by image."""
    grouped: dict[str, list[dict]] = {}
    for row in members:
        grouped.setdefault(row["group"], []).append(row)
    units = list(grouped.values())
    picked = rng.permutation(len(units))
    n_support = min(n_support, len(members) - 1)
    in_support, out = 0, []
    for rank, j in enumerate(picked):
        support = in_support < n_support and rank < len(units) - 1  # at least one group of queries
        in_support += len(units[j]) if support else 0
        out += [(member, support) for member in units[j]]
    return out


def _draw_classes(rng: np.random.Generator, classes: list[str], n: int) -> list[str]:
    """``n`` of ``classes`` (sorted), drawn with ``rng``: the ``--max-classes`` subset."""
    return sorted(rng.choice(classes, n, replace=False).tolist())


def _check_fractions(cfg: FewshotValidateConfig) -> None:
    if not 0 < cfg.val_fraction < 0.5 or not 0 < cfg.test_fraction < 0.5:
        raise ConfigError(f"class fractions must be in (0, 0.5); got val={cfg.val_fraction}, test={cfg.test_fraction}")


def _duplicates(
    rows: list[dict], hashes: list[int], cfg: FewshotValidateConfig
) -> tuple[list[str], list[str], set[str], int]:
    """Give every row its group (its path, or the merged group of its near-duplicates within
    its class) under ``cfg.duplicates``; returns (problems, warnings, the ``id`` of each dropped row, merges).
    Across classes, identical bytes are the label conflict reported by the caller; other
    near-duplicates are a warning."""
    pairs = near_pairs(hashes, cfg.near_duplicate_bits)
    same_class = np.asarray([rows[i]["label"] == rows[j]["label"] for i, j, _ in pairs.tolist()], dtype=bool)
    warnings = [
        f"{rows[j]['path']}: near-duplicate (dHash distance {d}) of {rows[i]['path']} of class '{rows[i]['label']}'"
        for i, j, d in pairs[~same_class].tolist()
        if rows[i]["md5"] != rows[j]["md5"]
    ]
    done = resolve(
        [r["path"] for r in rows],
        [r["path"] for r in rows],
        pairs[same_class].reshape(-1, 3),
        cfg.duplicates,
        digests=[r["md5"] for r in rows],
    )
    for row, group in zip(rows, done.groups, strict=True):
        row["group"] = group
    dropped = {id(r) for r, keep in zip(rows, done.keep, strict=True) if not keep}
    return list(done.problems), warnings + list(done.warnings), dropped, done.merged

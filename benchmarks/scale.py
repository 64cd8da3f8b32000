#!/usr/bin/env python3
"""Scaling of the steps that open every file: seconds per item and peak memory at growing sizes.

Wingbeat, on synthetic datasets of short WAVs (1k, 10k, 100k recordings): the three
validation steps (list the labels, check every recording, gather + split), the features of
one chunk, and the gather of the features of every chunk. Images (1k, 10k, 50k synthetic
JPEGs): the image checks (``check_image`` + md5) and the near-duplicate search
(``insectml.data.duplicates.near_pairs``, skipped when that module is absent).

Each step runs alone in a child process: its time is measured inside the child, around the
library call (not the interpreter start or the imports), and its peak RSS is the child's
own (VmHWM; ``ru_maxrss`` of a child would also count the parent's memory it was forked
from). Prints a table, then for every step the ratio of seconds per item at the
largest size over the smallest (linear: about 1; target <= 1.3), the largest peak RSS
(target < 2 GB) and the near-duplicate search time at the largest image count (target
<= 60 s).

The data is generated once into ``--work`` (default: a temporary folder, removed at the
end); a ``--work`` folder given again is reused. Features cost ~50 ms per recording, so
the features step is timed over one chunk (``--chunk-size`` rows) at every size, as each
pipeline task does; the features gather joins a chunk file per ``--chunk-size`` rows of
the whole manifest (copies of the real chunk's arrays under the manifest's ids).

    python benchmarks/scale.py [--sizes 1000,10000,100000] [--image-sizes 1000,10000,50000]
                               [--chunk-size 5000] [--bits 4] [--work DIR]
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LIB = Path(__file__).resolve().parents[1] / "lib"
sys.path.insert(0, str(LIB))

SPECIES = ("aedes_aegypti", "aedes_albopictus", "anopheles_gambiae", "culex_pipiens", "culex_quinquefasciatus")
F0 = (470.0, 530.0, 430.0, 345.0, 380.0)
SAMPLE_RATE = 8000
SECONDS = 0.25  # short recordings: the cost measured is per file, not per second of audio
PER_EVENT = 50  # recordings per recording event (the split's groups grow with the data)
NEAR_COPIES = 0.05  # share of images that are a slightly brighter copy of an earlier one


# ---------------------------------------------------------------------------------------
# Data, generated once


def write_recordings(root: Path, n: int) -> None:
    """``n`` short WAVs (a two-harmonic tone at the species' f0 plus noise, each unique)
    in folders of 1000, and labels.csv listing them; complete once ``root/done`` exists."""
    import wave

    import numpy as np

    if (root / "done").is_file() and int((root / "done").read_text()) >= n:
        return
    rng = np.random.default_rng(0)
    t = np.arange(int(SECONDS * SAMPLE_RATE)) / SAMPLE_RATE
    rows = []
    for k in range(n):
        species = k % len(SPECIES)
        f0 = F0[species] * rng.uniform(0.93, 1.07)
        audio = 0.4 * np.sin(2 * np.pi * f0 * t) + 0.2 * np.sin(4 * np.pi * f0 * t) + 0.05 * rng.standard_normal(t.size)
        path = Path("recordings") / f"{k // 1000:04d}" / f"{k:07d}.wav"
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        with wave.open(str(root / path), "wb") as fh:
            fh.setnchannels(1)
            fh.setsampwidth(2)
            fh.setframerate(SAMPLE_RATE)
            fh.writeframes((audio * 32767).astype("<i2").tobytes())
        rows.append((path.as_posix(), SPECIES[species], f"event{k // PER_EVENT:05d}"))
    with open(root / "labels.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(("path", "species", "event"))
        writer.writerows(rows)
    (root / "done").write_text(str(n))


def labels_of_size(root: Path, n: int) -> Path:
    """A labels CSV of the first ``n`` recordings."""
    out = root / f"labels_{n}.csv"
    if not out.is_file():
        with open(root / "labels.csv") as src, open(out, "w") as dst:
            for i, line in enumerate(src):
                if i > n:
                    break
                dst.write(line)
    return out


def write_images(root: Path, n: int) -> list[Path]:
    """``n`` 64x64 JPEGs (smooth random blobs, each distinct) in folders of 1000, a share
    of them near-duplicates (a brighter copy of an earlier image)."""
    import numpy as np
    from PIL import Image

    paths = [root / f"{k // 1000:04d}" / f"{k:07d}.jpg" for k in range(n)]
    if (root / "done").is_file() and int((root / "done").read_text()) >= n:
        return paths
    rng = np.random.default_rng(1)
    for k, path in enumerate(paths):
        path.parent.mkdir(parents=True, exist_ok=True)
        if k > 10 and rng.random() < NEAR_COPIES:
            with Image.open(paths[int(rng.integers(0, k))]) as original:
                pixels = np.asarray(original, dtype=np.int16) + 12
            image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        else:
            small = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
            image = Image.fromarray(small).resize((64, 64), Image.Resampling.BILINEAR)
        image.save(path, quality=90)
    (root / "done").write_text(str(n))
    return paths


def write_parts(manifest: Path, part: Path, chunk: int, folder: Path) -> list[Path]:
    """Chunk files covering ``manifest``: the arrays of the real chunk file ``part``,
    repeated, under each chunk's ids, labels and split."""
    import numpy as np
    from insectml.data.manifest import iter_manifest

    folder.mkdir(parents=True, exist_ok=True)
    with np.load(part) as data:
        template = {k: data[k] for k in data.files}
    rows = list(iter_manifest(manifest))
    parts = []
    for i in range(0, len(rows), chunk):
        batch = rows[i : i + chunk]
        take = np.arange(len(batch)) % len(template["ids"])
        arrays = {k: v[take] if k in ("engineered", "logmel", "frames") else v for k, v in template.items()}
        arrays["ids"] = np.asarray([r["id"] for r in batch])
        arrays["labels"] = np.asarray([r["label"] for r in batch])
        arrays["split"] = np.asarray([r["split"] for r in batch])
        parts.append(folder / f"part_{i // chunk:05d}.npz")
        np.savez_compressed(parts[-1], **arrays)
    return parts


# ---------------------------------------------------------------------------------------
# The steps, each run in a child process: {"seconds": ..., "items": ...}


def step(name: str, a: dict) -> dict:
    from insectml.caches import default_caches

    default_caches()
    if name in ("list", "check", "gather"):
        from insectml.wingbeat import validate as v

        cfg = v.ValidateConfig(labels=Path(a["labels"]), data_dir=Path(a["data"]), out_dir=Path(a["out"]), classes=None)
        tic = time.perf_counter()
        if name == "list":
            items = v.list_candidates(cfg)["rows"]
        elif name == "check":
            items, _ = v.check_candidates(Path(a["candidates"]), cfg, Path(a["out"]) / v.CHECKED)
        else:
            items = v.gather(Path(a["listing"]), [Path(a["checked"])], cfg)["n_samples"]
        return {"seconds": time.perf_counter() - tic, "items": items}
    if name == "features":
        from insectml.data.manifest import iter_manifest, read_json
        from insectml.wingbeat.features import extract
        from insectml.wingbeat.frontend import FrontendConfig

        dataset = read_json(Path(a["dataset"]), "dataset")
        cfg = FrontendConfig(sample_rate=dataset["split"]["sample_rate"])
        first = [next(iter_manifest(Path(a["manifest"])))]
        extract(first, Path(a["data"]), cfg, Path(a["out"]).with_suffix(".warm.npz"), dataset)  # JIT, caches
        tic = time.perf_counter()
        items = extract(iter_manifest(Path(a["manifest"])), Path(a["data"]), cfg, Path(a["out"]), dataset)
        return {"seconds": time.perf_counter() - tic, "items": items}
    if name == "features_gather":
        from insectml.wingbeat.features import gather_features

        tic = time.perf_counter()
        items = gather_features([Path(p) for p in a["parts"]], Path(a["manifest"]), Path(a["out"]))
        return {"seconds": time.perf_counter() - tic, "items": items}
    if name == "image_check":
        import numpy as np
        from insectml.data.images import check_image
        from insectml.data.manifest import file_digest

        paths = [Path(p) for p in Path(a["list"]).read_text().splitlines()]
        check_image(paths[0], "warm-up")
        tic = time.perf_counter()
        hashes = []
        for path in paths:
            _, dhash, problem = check_image(path, path.name)
            file_digest(path)
            if problem:
                raise RuntimeError(problem)
            hashes.append(dhash)
        seconds = time.perf_counter() - tic
        np.save(a["out"], np.asarray(hashes, dtype=np.uint64))
        return {"seconds": seconds, "items": len(paths)}
    if name == "near_duplicates":
        import numpy as np
        from insectml.data.duplicates import near_pairs

        hashes = np.load(a["hashes"])
        near_pairs(hashes[:100], a["bits"])
        tic = time.perf_counter()
        pairs = near_pairs(hashes, a["bits"])
        return {"seconds": time.perf_counter() - tic, "items": len(hashes), "pairs": len(pairs)}
    raise ValueError(name)


def peak_rss() -> int:
    """This process's peak resident memory in bytes (Linux: VmHWM, which an exec resets;
    elsewhere ru_maxrss)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def run(name: str, **a: object) -> dict:
    """Run step ``name`` in a child process: its result, with its peak RSS (bytes)."""
    done = subprocess.run(
        [sys.executable, __file__, "_step", name, json.dumps(a, default=str)], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"scale.py: step {name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------


def wingbeat(work: Path, sizes: list[int], chunk: int, table: list[tuple]) -> None:
    data = work / "wingbeat"
    tic = time.perf_counter()
    write_recordings(data, max(sizes))
    print(f"  (recordings ready in {time.perf_counter() - tic:.0f} s)", flush=True)
    for n in sizes:
        out = work / f"wingbeat_{n}"  # every file in it is rewritten (atomically) by the steps
        labels = labels_of_size(data, n)
        common = {"labels": labels, "data": data}
        table.append(("wingbeat list", n, run("list", **common, out=out / "list")))
        table.append(("wingbeat check", n, run("check", **common, out=out, candidates=out / "list/candidates.jsonl")))
        table.append(
            (
                "wingbeat gather",
                n,
                run("gather", **common, out=out, listing=out / "list/listing.json", checked=out / "checked.jsonl"),
            )
        )
        manifest = out / "manifest.jsonl"
        with open(manifest) as src:
            (out / "chunk.jsonl").write_text("".join(line for _, line in zip(range(chunk), src, strict=False)))
        features = run(
            "features", manifest=out / "chunk.jsonl", dataset=out / "dataset.json", data=data, out=out / "part.npz"
        )
        table.append((f"wingbeat features (chunk of {min(n, chunk)})", n, features))
        parts = write_parts(manifest, out / "part.npz", chunk, out / "parts")
        table.append(
            ("wingbeat features gather", n, run("features_gather", parts=parts, manifest=manifest, out=out / "f.npz"))
        )
        for part in parts:  # gigabytes at 100k: only the last size's are kept
            part.unlink()
        for row in table[-5:]:
            show(row)


def images(work: Path, sizes: list[int], bits: int, table: list[tuple]) -> None:
    tic = time.perf_counter()
    paths = write_images(work / "images", max(sizes))
    print(f"  (images ready in {time.perf_counter() - tic:.0f} s)", flush=True)
    near = importlib.util.find_spec("insectml.data.duplicates") is not None
    if not near:
        print("  insectml.data.duplicates is not there: the near-duplicate search is skipped")
    for n in sizes:
        listed = work / f"images_{n}.txt"
        listed.write_text("\n".join(map(str, paths[:n])) + "\n")
        hashes = work / f"hashes_{n}.npy"
        table.append(("image check + md5", n, run("image_check", list=listed, out=hashes)))
        show(table[-1])
        if near:
            table.append((f"near-duplicates (<= {bits} bits)", n, run("near_duplicates", hashes=hashes, bits=bits)))
            show(table[-1])


def show(row: tuple) -> None:
    name, n, r = row
    extra = f"  {r['pairs']} pairs" if "pairs" in r else ""
    per = r["seconds"] / r["items"]
    print(
        f"  {name:<34} {n:>7}  {r['seconds']:8.2f} s  {per * 1e6:10.1f} µs/item  {r['rss'] / 2**20:7.0f} MB{extra}",
        flush=True,
    )


def summary(table: list[tuple]) -> None:
    print("\nseconds per item, largest size over smallest (linear: ~1; target <= 1.3):")
    steps = dict.fromkeys(name.split(" (chunk")[0] for name, _, _ in table)
    for step_name in steps:
        rows = sorted((n, r) for name, n, r in table if name.split(" (chunk")[0] == step_name)
        (n0, r0), (n1, r1) = rows[0], rows[-1]
        ratio = (r1["seconds"] / r1["items"]) / (r0["seconds"] / r0["items"])
        flag = "" if ratio <= 1.3 else "  ABOVE TARGET"
        print(f"  {step_name:<34} {n1:>7} / {n0:<7} {ratio:5.2f}{flag}")
    name, n, r = max(table, key=lambda row: row[2]["rss"])
    flag = "" if r["rss"] < 2**31 else "  ABOVE TARGET"
    print(f"largest peak RSS: {r['rss'] / 2**20:.0f} MB ({name} at {n}; target < 2048 MB){flag}")
    near = [(n, r) for name, n, r in table if name.startswith("near-duplicates")]
    if near:
        n, r = max(near, key=lambda nr: nr[0])
        flag = "" if r["seconds"] <= 60 else "  ABOVE TARGET"
        print(f"near-duplicate search at {n} images: {r['seconds']:.2f} s (target <= 60 s){flag}")


def sizes(text: str) -> list[int]:
    return sorted(int(v) for v in text.split(",") if v.strip())


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "_step":
        result = step(sys.argv[2], json.loads(sys.argv[3]))
        print(json.dumps({**result, "rss": peak_rss()}))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=sizes, default=[1000, 10000, 100000], help="recordings (default: 1k,10k,100k)")
    parser.add_argument(
        "--image-sizes", type=sizes, default=[1000, 10000, 50000], help="images (default: 1k,10k,50k; '' skips)"
    )
    from insectml.runparams import GENERAL

    chunk = GENERAL.default("chunk_size")
    parser.add_argument(
        "--chunk-size", type=int, default=chunk, help=f"rows per chunk (default: {chunk}, as the pipeline)"
    )
    parser.add_argument("--bits", type=int, default=4, help="near-duplicate Hamming distance (default: 4)")
    parser.add_argument("--work", type=Path, help="data folder, reused when given again (default: a temporary one)")
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="insectml-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    table: list[tuple] = []
    try:
        if args.sizes:
            print(f"wingbeat: {', '.join(map(str, args.sizes))} recordings of {SECONDS} s in {work}", flush=True)
            wingbeat(work, args.sizes, args.chunk_size, table)
        if args.image_sizes:
            print(f"images: {', '.join(map(str, args.image_sizes))} 64x64 JPEGs in {work}", flush=True)
            images(work, args.image_sizes, args.bits, table)
    finally:
        if args.work is None:
            shutil.rmtree(work)  # the temporary folder made above
    summary(table)
    print(f"total {time.perf_counter() - start:.0f} s on {os.cpu_count()} CPU(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

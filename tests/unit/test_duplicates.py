"""Duplicates: the exact sub-quadratic near-duplicate search, union-find clusters, the
group / drop / error policies, and what the validate steps make of them."""

import json
from pathlib import Path

import numpy as np
import pytest
from insectml.data.duplicates import clusters, equal_pairs, near_pairs, resolve
from insectml.data.split import grouped_split
from insectml.errors import ValidationFailed
from insectml.fewshot.validate import FewshotValidateConfig, validate_fewshot


def brute_force(hashes: np.ndarray, d: int) -> np.ndarray:
    distance = np.bitwise_count(hashes[:, None] ^ hashes[None, :]).astype(np.int64)
    i, j = np.nonzero(np.triu(distance <= d, k=1))
    return np.stack([i, j, distance[i, j]], axis=1)


def random_hashes(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, np.iinfo(np.uint64).max, size=n, dtype=np.uint64, endpoint=True)


def clustered_hashes(n: int, rng: np.random.Generator) -> np.ndarray:
    """Bursts: copies of a few seeds with 0-8 bits flipped, some copies exact, mixed with noise."""
    seeds = random_hashes(20, rng)
    values = seeds[rng.integers(0, len(seeds), size=n)]
    for k in range(n):
        for b in rng.choice(64, size=int(rng.integers(0, 9)), replace=False):
            values[k] ^= np.uint64(1) << np.uint64(b)
    return np.concatenate([values, random_hashes(n // 4, rng)])


@pytest.mark.parametrize("d", [0, 1, 2, 4, 7, 12, 64])
@pytest.mark.parametrize("kind", ["random", "clustered"])
def test_near_pairs_is_exactly_the_brute_force_search(kind, d):
    rng = np.random.default_rng(d)
    hashes = random_hashes(600, rng) if kind == "random" else clustered_hashes(300, rng)
    if kind == "random":  # random 64-bit hashes are far apart; plant a few close ones
        hashes[:50] = hashes[50:100] ^ (np.uint64(1) << rng.integers(0, 64, size=50).astype(np.uint64))
    assert np.array_equal(near_pairs(hashes, d), brute_force(hashes, d))


def test_near_pairs_takes_python_ints_of_all_64_bits():
    top = (1 << 64) - 1
    pairs = near_pairs([top, top ^ 0b101, 0, 1 << 63], 2)
    assert pairs.tolist() == [[0, 1, 2], [2, 3, 1]]


def test_equal_pairs_links_each_copy_to_the_first():
    assert equal_pairs(["a", "b", "a", "c", "a", "b"]).tolist() == [[0, 2, 0], [0, 4, 0], [1, 5, 0]]


def test_clusters_follow_chains_of_pairs():
    pairs = np.array([[3, 4, 1], [0, 4, 2], [1, 2, 0]])
    assert clusters(6, pairs) == [0, 1, 1, 0, 0, 5]


def test_group_policy_merges_groups_under_the_smallest_name_with_a_line_each():
    names = ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"]
    groups = ["Y", "X", "Z", "Z", "W"]
    pairs = np.array([[0, 1, 3], [1, 2, 0], [2, 3, 1]])
    done = resolve(names, groups, pairs, "group", digests=["1", "2", "3", "3", "4"])
    assert done.groups == ("X", "X", "X", "X", "W")
    assert done.merged == 2 and done.keep == (True,) * 5 and not done.problems
    assert "b.jpg: near-duplicate (dHash distance 3) of a.jpg in group Y; groups X, Y merged" in done.warnings
    assert "d.jpg: identical to c.jpg in the same group" in done.warnings


def test_drop_policy_keeps_the_first_path_of_each_cluster():
    names = ["z.jpg", "b.jpg", "a.jpg", "c.jpg"]
    pairs = np.array([[0, 1, 2], [1, 2, 1]])
    done = resolve(names, ["g1", "g2", "g3", "g4"], pairs, "drop")
    assert done.keep == (False, False, True, True) and done.dropped == 2
    assert done.warnings == (
        "b.jpg: near-duplicate (dHash distance 1) of a.jpg; dropped, keeping a.jpg",
        "z.jpg: near-duplicate (dHash distance 2) of b.jpg; dropped, keeping a.jpg",
    )


def test_error_policy_refuses_each_pair_across_groups_and_warns_within_one():
    pairs = np.array([[0, 1, 0], [0, 2, 4]])
    done = resolve(["a", "b", "c"], ["g1", "g1", "g2"], pairs, "error", digests=["m", "m", "n"])
    assert done.problems == ("c: near-duplicate (dHash distance 4) of a in another group (g1, not g2)",)
    assert done.warnings == ("b: identical to a in the same group",)


def test_merged_groups_never_straddle_train_val_test():
    rng = np.random.default_rng(5)
    n = 400
    groups = [f"event{k // 4:03d}" for k in range(n)]  # 100 events of 4 images
    labels = [f"class{(k // 4) % 5}" for k in range(n)]
    hashes = random_hashes(n, rng)
    for k in range(0, n, 13):  # near-duplicates of images of other events
        hashes[(k * 7 + 29) % n] = hashes[k] ^ np.uint64(0b11)
    pairs = near_pairs(hashes, 4)
    done = resolve([f"{k:03d}.jpg" for k in range(n)], groups, pairs, "group")
    split = grouped_split(labels, list(done.groups), 0.15, 0.2, seed=1)
    assert done.merged > 0 and all(split[i] == split[j] for i, j, _ in pairs.tolist())


def test_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="group, drop, error"):
        resolve(["a"], ["g"], equal_pairs(["x"]), "merge")


# Few-shot validation on tiny noise images: every image its own group, near-duplicates
# within a class grouped on one side of the support/query cut.


def noise_image(path: Path, seed: int) -> None:
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def near_copy(src: Path, dst: Path) -> None:
    """Other bytes, the same picture to the eye (and to dHash)."""
    from PIL import Image

    with Image.open(src) as image:
        pixels = np.asarray(image).copy()
    pixels[0, 0] ^= 1
    Image.fromarray(pixels).save(dst)


@pytest.fixture
def fewshot_set(tmp_path):
    root = tmp_path / "data"
    for c in range(12):
        for k in range(4):
            noise_image(root / "images" / f"class{c:02d}" / f"img{k}.png", seed=c * 10 + k)
    return root


def fewshot(root, out, **kw):
    return validate_fewshot(FewshotValidateConfig(root=root, out_dir=out, images=root / "images", **kw))


def manifest(out):
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def test_fewshot_rows_get_a_group_and_a_clean_set_merges_nothing(fewshot_set, tmp_path):
    dataset = fewshot(fewshot_set, tmp_path / "out")
    rows = manifest(tmp_path / "out")
    assert all(r["group"] == r["path"] for r in rows) and dataset["split"]["groups_merged"] == 0


def test_fewshot_near_duplicates_in_a_class_stay_on_one_side_of_the_support_query_cut(fewshot_set, tmp_path):
    for c in range(12):
        folder = fewshot_set / "images" / f"class{c:02d}"
        near_copy(folder / "img0.png", folder / "img9.png")
    dataset = fewshot(fewshot_set, tmp_path / "out", support=1)
    rows = {r["path"]: r for r in manifest(tmp_path / "out")}
    novel = [c for c in range(12) if rows[f"images/class{c:02d}/img0.png"]["split"] != "train"]
    assert dataset["split"]["groups_merged"] == 12 and novel
    for c in novel:
        a, b = rows[f"images/class{c:02d}/img0.png"], rows[f"images/class{c:02d}/img9.png"]
        assert a["group"] == b["group"] and a["subset"] == b["subset"]


def test_fewshot_merges_are_warning_lines_in_the_report(fewshot_set, tmp_path):
    folder = fewshot_set / "images" / "class03"
    near_copy(folder / "img1.png", folder / "img7.png")
    fewshot(fewshot_set, tmp_path / "out")
    report = json.loads((tmp_path / "out" / "validation_report.json").read_text())
    assert report["warnings"] == [
        "images/class03/img7.png: near-duplicate (dHash distance 0) of images/class03/img1.png in group "
        "images/class03/img1.png; groups images/class03/img1.png, images/class03/img7.png merged"
    ]


def test_fewshot_drop_policy_drops_the_copy(fewshot_set, tmp_path):
    folder = fewshot_set / "images" / "class03"
    near_copy(folder / "img1.png", folder / "img7.png")
    dataset = fewshot(fewshot_set, tmp_path / "out", duplicates="drop")
    paths = {r["path"] for r in manifest(tmp_path / "out")}
    assert "images/class03/img7.png" not in paths and dataset["split"]["duplicates_dropped"] == 1


def test_fewshot_error_policy_refuses_near_duplicates_in_a_class(fewshot_set, tmp_path):
    folder = fewshot_set / "images" / "class03"
    near_copy(folder / "img1.png", folder / "img7.png")
    with pytest.raises(ValidationFailed, match="img7.png: near-duplicate"):
        fewshot(fewshot_set, tmp_path / "out", duplicates="error")


def test_fewshot_near_duplicate_across_classes_is_a_warning_identical_bytes_a_problem(fewshot_set, tmp_path):
    images = fewshot_set / "images"
    near_copy(images / "class01" / "img0.png", images / "class02" / "near.png")
    fewshot(fewshot_set, tmp_path / "ok")
    report = json.loads((tmp_path / "ok" / "validation_report.json").read_text())
    assert report["warnings"] == [
        "images/class02/near.png: near-duplicate (dHash distance 0) of images/class01/img0.png of class 'class01'"
    ]
    (images / "class02" / "same.png").write_bytes((images / "class01" / "img1.png").read_bytes())
    with pytest.raises(ValidationFailed, match="same.png: same bytes as an image of class 'class01'"):
        fewshot(fewshot_set, tmp_path / "bad")


def test_fewshot_class_of_only_duplicates_is_a_problem(fewshot_set, tmp_path):
    folder = fewshot_set / "images" / "class05"
    for k in (1, 2, 3):
        near_copy(folder / "img0.png", folder / f"img{k}.png")
    with pytest.raises(ValidationFailed, match="class 'class05': its 4 images are all near-duplicates"):
        fewshot(fewshot_set, tmp_path / "out")

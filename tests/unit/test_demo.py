import hashlib

from insectml.data.demo import write_wingbeat_demo


def digest(root):
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            h.update(path.relative_to(root).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def test_demo_data_is_byte_identical_for_a_seed(tmp_path):
    a = write_wingbeat_demo(tmp_path / "a", per_class=3, seed=11)
    b = write_wingbeat_demo(tmp_path / "b", per_class=3, seed=11)
    assert digest(a) == digest(b)


def test_demo_labels_have_species_and_event(tmp_path):
    root = write_wingbeat_demo(tmp_path / "a", per_class=2, seed=11)
    header = (root / "labels.csv").read_text().splitlines()[0]
    assert header == "path,species,sensor,event"

import csv
import hashlib

from insectml.data.demo import HARD_SPECIES, SESSIONS_PER_SPECIES, write_wingbeat_demo, write_wingbeat_hard_demo


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


def read_labels(root):
    with open(root / "labels.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_hard_demo_writes_every_listed_recording_and_nothing_else(tmp_path):
    root = write_wingbeat_hard_demo(tmp_path / "hard", per_session=3, seed=11)
    rows = read_labels(root)
    listed = {r["path"] for r in rows}
    on_disk = {p.relative_to(root).as_posix() for p in (root / "recordings").rglob("*.wav")}
    assert len(rows) == len(HARD_SPECIES) * SESSIONS_PER_SPECIES * 3 and listed == on_disk


def test_hard_demo_labels_and_classes(tmp_path):
    root = write_wingbeat_hard_demo(tmp_path / "hard", per_session=3, seed=11)
    header = (root / "labels.csv").read_text().splitlines()[0]
    classes = (root / "classes.txt").read_text().split()
    assert (header, classes) == ("path,species,session", list(HARD_SPECIES))


def test_hard_demo_paths_name_species_and_session(tmp_path):
    rows = read_labels(write_wingbeat_hard_demo(tmp_path / "hard", per_session=3, seed=11))
    assert all(r["path"].startswith(f"recordings/{r['species']}/{r['session']}_") for r in rows)


def test_hard_demo_has_one_species_per_session_and_four_sessions_per_species(tmp_path):
    rows = read_labels(write_wingbeat_hard_demo(tmp_path / "hard", per_session=3, seed=11))
    species_of = {}
    for r in rows:
        species_of.setdefault(r["session"], set()).add(r["species"])
    sessions_per_species = {s: sum(sp == {s} for sp in species_of.values()) for s in HARD_SPECIES}
    assert all(len(sp) == 1 for sp in species_of.values())
    assert set(sessions_per_species.values()) == {SESSIONS_PER_SPECIES}


def test_hard_demo_is_byte_identical_for_a_seed(tmp_path):
    a = write_wingbeat_hard_demo(tmp_path / "a", per_session=3, seed=11)
    b = write_wingbeat_hard_demo(tmp_path / "b", per_session=3, seed=11)
    assert digest(a) == digest(b)


def test_hard_demo_recordings_are_one_second_pcm16_at_8_khz(tmp_path):
    import soundfile as sf

    root = write_wingbeat_hard_demo(tmp_path / "hard", per_session=1, seed=11)
    infos = [sf.info(p) for p in (root / "recordings").rglob("*.wav")]
    assert all(i.samplerate == 8000 and i.subtype == "PCM_16" and 0.9 <= i.duration <= 1.1 for i in infos)


def test_data_demo_writes_the_hard_set_unless_told_0(run_cli, tmp_path):
    common = ["data", "demo", "--families", "wingbeat", "--wingbeat-per-class", "1"]
    run_cli(*common, "--wingbeat-hard-per-session", "1", "--out", tmp_path / "with")
    run_cli(*common, "--wingbeat-hard-per-session", "0", "--out", tmp_path / "without")
    written = [(tmp_path / d / "wingbeat_hard" / "labels.csv").is_file() for d in ("with", "without")]
    assert written == [True, False]

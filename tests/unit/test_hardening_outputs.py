"""Outputs survive a kill and never replace what is not ours: enrol refuses an --out that
is not a gallery, a kill while training, writing a gallery or releasing leaves the
previous files whole, checkpoints load without unpickling code, and names read from the
model store cannot leave it."""

import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from insectml.errors import ConfigError, InputFileError
from insectml.fewshot.gallery import Gallery
from insectml.fileio import copy_atomic, staged_folder
from insectml.release.store import ModelStore
from insectml.training.loop import LoopConfig, fit


class Killed(Exception):
    """Stands for the process dying in the middle of a write."""


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` (hidden ones too) by relative path, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def gallery(classes: str) -> Gallery:
    protos = np.random.default_rng(len(classes)).normal(size=(len(classes), 16)).astype(np.float32)
    return Gallery(list(classes), protos / np.linalg.norm(protos, axis=1, keepdims=True), [3] * len(classes), 0.5)


def cli(*args: object) -> int:
    from insectml.cli import main

    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def embedder(tmp_path_factory) -> Path:
    """An untrained few-shot model folder (weights.pt, config.json) and one image."""
    from insectml.fewshot.model import create_embedder
    from PIL import Image

    folder = tmp_path_factory.mktemp("embedder")
    torch.manual_seed(0)
    torch.save(create_embedder("resnet10t", 16).state_dict(), folder / "weights.pt")
    (folder / "config.json").write_text(json.dumps({"backbone": "resnet10t", "dim": 16, "image_size": 32}))
    Image.new("RGB", (32, 32), (200, 30, 90)).save(folder / "new.png")
    return folder


# --- fewshot enrol --out ------------------------------------------------------------


@pytest.mark.parametrize("where", ["a data folder", "the working folder"])
def test_enrol_refuses_an_out_folder_that_is_not_a_gallery(embedder, tmp_path, monkeypatch, capsys, where):
    gallery("abc").save(tmp_path / "g")
    data = tmp_path / "data"
    data.mkdir()
    (data / "labels.csv").write_text("path,label\n")
    out = data
    if where == "the working folder":
        monkeypatch.chdir(data)
        out = Path(".")
    code = cli("fewshot", "enrol", "--model", embedder, "--gallery", tmp_path / "g", "--name", "x",
               "--out", out, embedder / "new.png")  # fmt: skip
    lines = capsys.readouterr().err.strip().splitlines()
    assert (code, len(lines), (data / "labels.csv").read_text()) == (2, 1, "path,label\n"), lines
    assert "not a gallery folder" in lines[0]


def test_enrol_replaces_a_gallery_given_as_out_and_leaves_nothing_beside_it(embedder, tmp_path, capsys):
    gallery("abc").save(tmp_path / "g")
    gallery("pq").save(tmp_path / "out")
    assert cli("fewshot", "enrol", "--model", embedder, "--gallery", tmp_path / "g", "--name", "x",
               "--out", tmp_path / "out", embedder / "new.png") == 0  # fmt: skip
    assert Gallery.load(tmp_path / "out").classes == ["a", "b", "c", "x"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g", "out"]


# --- a kill mid-write ---------------------------------------------------------------


def dies_on_call(real, n: int):
    """``real`` (torch.save or np.savez: an object or arrays, then a path or handle) that,
    on its ``n``-th call, writes the first half of what it would write, then dies."""
    calls, is_torch = [], real is torch.save

    def write(*args, **kwargs):
        calls.append(1)
        if len(calls) < n:
            return real(*args, **kwargs)
        target, *rest = args[1:] if is_torch else args
        buffer = io.BytesIO()
        real(args[0], buffer) if is_torch else real(buffer, *rest, **kwargs)
        half = buffer.getvalue()[: len(buffer.getvalue()) // 2]
        if hasattr(target, "write"):
            target.write(half)
        else:
            Path(target).write_bytes(half)
        raise Killed

    return write


def toy():
    torch.manual_seed(0)
    x = torch.randn(16, 3)
    return torch.nn.Linear(3, 1), torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True))


def mse(model, batch, device):
    x, y = (t.to(device) for t in batch)
    return torch.nn.functional.mse_loss(model(x), y)


@pytest.mark.parametrize("dying, file", [(1, "weights.pt"), (2, "checkpoints/last.pt")])
def test_training_killed_while_saving_keeps_the_previous_file(tmp_path, monkeypatch, dying, file):
    """Epoch 3 saves weights.pt, then the checkpoint: a kill in either leaves the file of
    epoch 2, and no partial file beside it."""
    cfg = LoopConfig(out_dir=tmp_path, epochs=2, batch_size=4, device="cpu", keep="last")
    fit(*toy(), mse, None, cfg)
    before = snapshot(tmp_path)
    monkeypatch.setattr(torch, "save", dies_on_call(torch.save, dying))
    with pytest.raises(Killed):
        fit(*toy(), mse, None, replace(cfg, epochs=3, resume=True))
    after = snapshot(tmp_path)
    assert (after.keys(), after[file]) == (before.keys(), before[file])


def test_a_gallery_killed_between_its_two_files_is_the_old_gallery(tmp_path, monkeypatch):
    gallery("abcd").save(tmp_path / "g")
    before = snapshot(tmp_path)
    grown = gallery("abcd")
    grown.enrol("e", np.ones((2, 16), np.float32))

    def killed(*args, **kwargs):
        raise Killed

    monkeypatch.setattr("insectml.fewshot.gallery.write_json_atomic", killed)  # after gallery.npz
    with pytest.raises(Killed):
        grown.save(tmp_path / "g")
    assert snapshot(tmp_path) == before


def test_a_gallery_killed_mid_npz_leaves_no_partial_file(tmp_path, monkeypatch):
    gallery("abcd").save(tmp_path / "g")
    before = snapshot(tmp_path)
    monkeypatch.setattr(np, "savez", dies_on_call(np.savez, 1))
    with pytest.raises(Killed):
        gallery("abcdef").save(tmp_path / "g")
    assert snapshot(tmp_path) == before


def test_a_release_killed_while_copying_leaves_no_version(tmp_path, monkeypatch):
    files = [tmp_path / "model.mar", tmp_path / "model_card.json"]
    files[0].write_bytes(b"x" * 1000)
    files[1].write_text('{"archive": "model.mar"}')
    store = ModelStore(tmp_path / "store")
    real = store.fs.put_file

    def half_of_the_second(src, dest, **kwargs):
        if Path(src).name == "model.mar":
            return real(src, dest, **kwargs)
        Path(dest).write_bytes(Path(src).read_bytes()[:5])
        raise Killed

    monkeypatch.setattr(store.fs, "put_file", half_of_the_second)
    with pytest.raises(Killed):
        store.put("m", "v1.0.0", files)
    assert snapshot(tmp_path / "store") == {}


def test_a_release_stages_then_renames_its_version(tmp_path):
    (tmp_path / "model.mar").write_bytes(b"mar")
    store = ModelStore(tmp_path / "store")
    store.put("m", "v1.0.0", [tmp_path / "model.mar"])
    with pytest.raises(ConfigError, match="already exists"):
        store.put("m", "v1.0.0", [tmp_path / "model.mar"])
    assert snapshot(tmp_path / "store") == {"m/v1.0.0/model.mar": b"mar"}


def test_a_staged_folder_that_fails_leaves_the_old_folder(tmp_path):
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "a").write_text("old")
    with pytest.raises(Killed), staged_folder(tmp_path / "f") as stage:
        (stage / "a").write_text("new")
        raise Killed
    assert snapshot(tmp_path) == {"f/a": b"old"}
    with staged_folder(tmp_path / "f") as stage:
        (stage / "b").write_text("new")
    assert snapshot(tmp_path) == {"f/b": b"new"}


def test_copy_atomic_killed_keeps_the_old_copy(tmp_path, monkeypatch):
    (tmp_path / "src").write_bytes(b"n" * 100)
    (tmp_path / "dest").write_bytes(b"old")

    def half(source, target, *args):
        target.write(source.read(50))
        raise Killed

    monkeypatch.setattr("shutil.copyfileobj", half)
    with pytest.raises(Killed):
        copy_atomic(tmp_path / "src", tmp_path / "dest")
    assert snapshot(tmp_path) == {"dest": b"old", "src": b"n" * 100}


# --- checkpoints: weights_only ------------------------------------------------------

TRIPPED = []


class Tripwire:
    def __reduce__(self):
        return (TRIPPED.append, ("code ran",))


def test_a_checkpoint_holding_pickled_code_is_refused_unrun(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    torch.save({"model": Tripwire()}, tmp_path / "checkpoints" / "last.pt")
    model, data = toy()
    cfg = LoopConfig(out_dir=tmp_path, epochs=1, batch_size=4, device="cpu", keep="last", resume=True)
    with pytest.raises(InputFileError, match="checkpoint"):
        fit(model, data, mse, None, cfg)
    assert TRIPPED == []


# --- names from the model store -----------------------------------------------------


@pytest.mark.parametrize("name", ["../secret", "..", "a/b", "", "a\\b"])
def test_the_store_fetches_plain_names_only(tmp_path, name):
    (tmp_path / "store" / "m" / "v1.0.0").mkdir(parents=True)
    (tmp_path / "store" / "m" / "secret").write_text("not released")
    with pytest.raises(ConfigError, match="not a plain name"):
        ModelStore(tmp_path / "store").fetch("m", "v1.0.0", name, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_deploy_refuses_a_card_whose_archive_leaves_the_store(tmp_path):
    from insectml.release.deploy import deploy

    version = tmp_path / "store" / "m" / "v1.0.0"
    version.mkdir(parents=True)
    (version / "model_card.json").write_text(json.dumps({"archive": "../../../outside.mar"}))
    (tmp_path / "sample.wav").write_bytes(b"RIFF")
    with pytest.raises(ConfigError, match="'archive': '../../../outside.mar' is not a plain name"):
        deploy(
            "m", "v1.0.0", "http://127.0.0.1:9", "http://127.0.0.1:9", str(tmp_path / "store"),
            tmp_path / "mms", tmp_path / "sample.wav",
        )  # fmt: skip

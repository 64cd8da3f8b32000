"""The bad-input corpus (issue 18): each kind of bad input a user can give any input of
the stack, one row per kind in :data:`KINDS`.

A CLI row runs the real ``bin/insectml`` in a subprocess on a small dataset made for it
and checks what the user sees. For an ``error``: exit 2, stderr's last line one
``insectml: error:`` line naming the file (or the field, the param) and the problem, no
traceback anywhere, and the outputs an earlier run left in ``--out`` (manifest.jsonl,
dataset.json) byte for byte as they were, with no temporary file left beside them; with
several bad files in one dataset, each is named in its own problem of
validation_report.json. For a kind ``accepted`` as the README or the code documents it:
exit 0, the file in the new manifest, and the kind's warning, if it has one, in
validation_report.json.

An HTTP row goes through a handler's real code path in-process, with MMS's own request
context and a stand-in model: the bad body gets a 4xx and a JSON ``{"error"}`` for that
request only, the good body beside it in the batch is answered, and so is the next batch.
The real server is tested by tests/integration/test_mms.py and benchmarks/serve_load.py.

A new kind is one row: what makes it (tests/badinput/inputs.py), the input it goes to,
what must happen, and the words the answer must hold.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.badinput import inputs as make

ERROR, ACCEPTED = "error", "accepted"


@dataclass(frozen=True)
class Kind:
    name: str
    input: str  # the input it goes to: a key of RUNNERS
    make: Callable  # spoils the input's small dataset (or returns params, a request body)
    expect: str  # ERROR, or ACCEPTED as documented
    says: tuple[str, ...] = ()  # error: in stderr's last line (or the HTTP answer); accepted: in a warning
    args: tuple[str, ...] = ()  # more CLI options
    kept: str = ""  # accepted: this path is in the new manifest
    each: tuple[str, ...] = ()  # several bad files in one dataset: each in its own reported problem


# ---------------------------------------------------------------- how a kind spoils an input


def recording(name: str, write: Callable[[Path], None]) -> Callable[[Path], None]:
    """One more recording of species aedes (in a group of its own), listed in labels.csv."""

    def add(data: Path) -> None:
        write(data / "rec" / name)
        with (data / "labels.csv").open("a") as fh:
            fh.write(f"rec/{name},aedes,{Path(name).stem}\n")

    return add


def recordings(files: dict[str, Callable[[Path], None]]) -> Callable[[Path], None]:
    """Several more recordings, and a row whose recording does not exist."""

    def add(data: Path) -> None:
        for name, write in files.items():
            recording(name, write)(data)
        with (data / "labels.csv").open("a") as fh:
            fh.write("rec/never_recorded.wav,aedes,e9\n")

    return add


def labels_text(change: Callable[[str], str], encoding: str = "utf-8") -> Callable[[Path], None]:
    """Rewrite data/labels.csv (where both families' datasets keep it)."""

    def rewrite(data: Path) -> None:
        path = data / "labels.csv"
        path.write_bytes(change(path.read_text(encoding="utf-8")).encode(encoding))

    return rewrite


def repeat_first_row(text: str) -> str:
    return text + text.splitlines()[1] + "\n"


def classes(text: str, encoding: str = "utf-8") -> Callable[[Path], None]:
    """A classes.txt in the wingbeat data folder (validate reads it from there)."""
    return lambda data: (data / "classes.txt").write_bytes(text.encode(encoding))


def yolo_with(name: str, body: Callable[[], bytes], label: str = "0 0.5 0.5 0.4 0.4\n") -> Callable[[Path], Path]:
    """A YOLO export with one more image (these bytes) and its label file."""

    def build(root: Path) -> Path:
        data = make.yolo(root)
        make.yolo_image(root, name, body(), label)
        return data

    return build


def yolo_rows(rows: str) -> Callable[[Path], Path]:
    """A YOLO export whose first image's label file holds ``rows``."""

    def build(root: Path) -> Path:
        data = make.yolo(root)
        (root / "train" / "labels" / "img0.txt").write_text(rows)
        return data

    return build


def no_meta(root: Path) -> Path:
    project = make.supervisely(root)
    (project / "meta.json").unlink()
    return project


def image_rows(files: dict[str, Callable[[], bytes]]) -> Callable[[Path], None]:
    """More images of class0, listed in the few-shot labels.csv."""

    def add(root: Path) -> None:
        for name, body in files.items():
            (root / "images" / "class0" / name).write_bytes(body())
            with (root / "labels.csv").open("a") as fh:
                fh.write(f"images/class0/{name},class0\n")

    return add


def sweep(text: str) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        (folder / "sweep.yaml").write_text(text)
        return folder / "sweep.yaml"

    return write


def body(data: Callable[[], bytes], content_type: str = "") -> Callable[[Path], tuple[bytes, str]]:
    """A request body and the Content-Type it is sent with ("" = none)."""
    return lambda _folder: (data(), content_type)


def garbage() -> bytes:
    return np.random.default_rng(5).integers(0, 256, 20_000, dtype=np.uint8).tobytes()


def wav_50mb() -> bytes:
    return make.wav_bytes(50 * 2**20 / 2 / make.RATE)  # 16-bit mono: 2 bytes a sample


def empty(path: Path) -> None:
    path.write_bytes(b"")


# ---------------------------------------------------------------- the corpus

W = make.wav
SEVERAL_WAVS = {"cut.wav": make.wav_truncated, "empty.wav": empty, "st.wav": lambda p: W(p, channels=2),
                "nan.wav": make.wav_with(np.nan), "pic.wav": make.png_as_wav}  # fmt: skip
SEVERAL_IMAGES = {"empty.png": lambda: b"", "cut.jpg": make.jpeg_truncated, "deep.png": make.png_16bit,
                  "dot.png": make.png_1x1, "bomb.png": make.bomb}  # fmt: skip

# fmt: off
KINDS = [
    # recordings: wingbeat validate
    Kind("wav-truncated", "wingbeat", recording("cut.wav", make.wav_truncated), ERROR, ("rec/cut.wav: truncated WAV: header promises 8000 frames",)),
    Kind("wav-0-bytes", "wingbeat", recording("empty.wav", empty), ERROR, ("rec/empty.wav: empty file (0 bytes)",)),
    Kind("wav-stereo", "wingbeat", recording("st.wav", lambda p: W(p, channels=2)), ERROR, ("rec/st.wav: has 2 channels; a mono recording is required",)),
    Kind("wav-24-bit", "wingbeat", recording("b24.wav", lambda p: W(p, subtype="PCM_24", seed=7)), ACCEPTED, kept="rec/b24.wav"),
    Kind("wav-44.1kHz", "wingbeat", recording("cd.wav", lambda p: W(p, rate=44100)), ERROR, ("rec/cd.wav: sample rate is 44100 Hz; 8000 Hz is required",)),
    Kind("wav-44.1kHz-resample", "wingbeat", recording("cd.wav", lambda p: W(p, rate=44100, seed=8)), ACCEPTED, args=("--resample",), kept="rec/cd.wav"),
    Kind("wav-nan", "wingbeat", recording("nan.wav", make.wav_with(np.nan)), ERROR, ("rec/nan.wav: contains 3 NaN sample(s)",)),
    Kind("wav-inf", "wingbeat", recording("inf.wav", make.wav_with(np.inf)), ERROR, ("rec/inf.wav: contains 3 infinite sample(s)",)),
    Kind("wav-is-a-png", "wingbeat", recording("pic.wav", make.png_as_wav), ERROR, ("rec/pic.wav: not a readable WAV file",)),
    Kind("wav-10-minutes", "wingbeat", recording("long.wav", lambda p: W(p, seconds=600, seed=9)), ACCEPTED, kept="rec/long.wav"),
    Kind("wav-several-bad", "wingbeat", recordings(SEVERAL_WAVS), ERROR, ("data/labels.csv: 6 problem(s) found",),
         each=("rec/cut.wav: truncated WAV", "rec/empty.wav: empty file", "rec/st.wav: has 2 channels",
               "rec/nan.wav: contains 3 NaN", "rec/pic.wav: not a readable WAV", "rec/never_recorded.wav: file not found")),
    # the wingbeat labels CSV and classes.txt
    Kind("csv-missing-column", "wingbeat", labels_text(lambda t: t.replace("path,species,event", "path,event")), ERROR, ("data/labels.csv: missing column(s) 'species'",)),
    Kind("csv-bom", "wingbeat", labels_text(lambda t: "\ufeff" + t), ACCEPTED, kept="rec/aedes_e1.wav"),
    Kind("csv-semicolons", "wingbeat", labels_text(lambda t: t.replace(",", ";")), ERROR, ("data/labels.csv: missing column(s) 'path', 'species', 'event'",)),
    Kind("csv-not-utf8", "wingbeat", labels_text(lambda t: t + "rec/x.wav,aedes_\xe9gypti,e4\n", "latin-1"), ERROR, ("data/labels.csv: not a UTF-8 text CSV file",)),
    Kind("csv-duplicate-paths", "wingbeat", labels_text(repeat_first_row), ERROR, ("labels.csv line 8: 'rec/aedes_e1.wav' is listed twice",)),
    Kind("classes-txt-not-utf8", "wingbeat", classes("aedes\nculex\nanoph\xe8les\n", "latin-1"), ERROR, ("data/classes.txt: not a UTF-8 text file",)),
    Kind("classes-txt-bom", "wingbeat", classes("\ufeffaedes\nculex\n"), ACCEPTED, kept="rec/aedes_e1.wav"),
    # the few-shot labels CSV
    Kind("fewshot-csv-missing-column", "fewshot", labels_text(lambda t: t.replace("path,label", "path,species")), ERROR, ("data/labels.csv: missing column(s) label",)),
    Kind("fewshot-csv-bom", "fewshot", labels_text(lambda t: "\ufeff" + t), ACCEPTED, kept="images/class0/0.png"),
    Kind("fewshot-csv-semicolons", "fewshot", labels_text(lambda t: t.replace(",", ";")), ERROR, ("data/labels.csv: missing column(s) label, path",)),
    Kind("fewshot-csv-not-utf8", "fewshot", labels_text(lambda t: t + "images/class0/0.png,caf\xe9\n", "latin-1"), ERROR, ("data/labels.csv: not a UTF-8 text CSV file",)),
    Kind("fewshot-csv-duplicate-paths", "fewshot", labels_text(repeat_first_row), ERROR, ("labels.csv:22: 'images/class0/0.png' is listed twice",)),
    # images: detector validate (a YOLO export), few-shot validate (listed in the CSV)
    Kind("image-0-bytes", "detector", yolo_with("empty.png", lambda: b""), ERROR, ("train/images/empty.png: empty file (0 bytes)",)),
    Kind("jpeg-truncated", "detector", yolo_with("cut.jpg", make.jpeg_truncated), ERROR, ("train/images/cut.jpg: truncated image",)),
    Kind("jpeg-cmyk", "detector", yolo_with("cmyk.jpg", make.cmyk_jpeg), ACCEPTED, kept="train/images/cmyk.jpg"),
    Kind("png-16-bit", "detector", yolo_with("deep.png", make.png_16bit), ERROR, ("train/images/deep.png: 16-bit greyscale image",)),
    Kind("image-1x1", "detector", yolo_with("dot.png", make.png_1x1, label=""), ERROR, ("train/images/dot.png: image is 1x1 px; at least 8x8 expected",)),
    Kind("image-bomb", "detector", yolo_with("bomb.png", make.bomb), ERROR, ("train/images/bomb.png: image too large to decode",)),
    Kind("gif-animated", "fewshot", image_rows({"moving.gif": make.gif_animated}), ACCEPTED, kept="images/class0/moving.gif"),
    Kind("images-several-bad", "fewshot", image_rows(SEVERAL_IMAGES), ERROR, ("data/labels.csv: 5 problem(s) found",),
         each=("class0/empty.png: empty file", "class0/cut.jpg: truncated image", "class0/deep.png: 16-bit",
               "class0/dot.png: image is 1x1", "class0/bomb.png: image too large")),
    # box labels: detector validate
    Kind("sly-box-outside-clipped", "detector", lambda r: make.supervisely(r, box=(50, 10, 90, 30)), ACCEPTED, ("bug box [50, 10, 90, 30]: clipped to the 64x48 image",), kept="sly/ds/img/img0.png"),
    Kind("sly-box-outside-rejected", "detector", lambda r: make.supervisely(r, box=(50, 10, 90, 30)), ERROR, ("sly/ds/img/img0.png: bug box [50, 10, 90, 30] lies outside the 64x48 image",), args=("--box-policy", "reject")),
    Kind("sly-no-meta-json", "detector", no_meta, ERROR, ("data/sly: no box labels found",)),
    Kind("sly-unknown-class", "detector", lambda r: make.supervisely(r, cls="beetle"), ERROR, ("sly/ds/ann/img0.png.json: ", "class name beetle was not found")),
    Kind("coco-dangling-image-id", "detector", lambda r: make.coco(r, dangling=True), ERROR, ("instances.json: annotation 50: image_id 99 is not among images",)),
    Kind("yolo-polygon", "detector", yolo_rows("0 0.1 0.1 0.6 0.2 0.4 0.7\n"), ACCEPTED, kept="train/images/img0.png"),
    Kind("yolo-over-1", "detector", yolo_rows("0 0.5 0.5 1.4 0.4\n"), ERROR, ("train/labels/img0.txt: line 1: values outside [0, 1]",)),
    Kind("yolo-empty-label-file", "detector", yolo_rows(""), ACCEPTED, kept="train/images/img0.png"),
    Kind("voc-without-size", "detector", lambda r: make.voc(r, sized=False), ACCEPTED, kept="JPEGImages/img0.png"),
    # pipeline params: params validate
    Kind("param-wrong-type", "params", lambda _: {"wingbeat_epochs": "ten"}, ERROR, ("--wingbeat_epochs: 'ten' is not of type integer",)),
    Kind("param-unknown", "params", lambda _: {"wingbeat_epoch": 3}, ERROR, ("--wingbeat_epoch: unknown parameter",)),
    Kind("param-missing-equals", "params", lambda _: {"slurm_options": True}, ERROR, ("--slurm_options: has no value",)),
    # sweep files: sweep plan
    Kind("sweep-grid-scalar", "sweep", sweep("task: wingbeat\nmodel: cnn\nparams:\n  wingbeat_lr: 0.01\n"), ERROR, ("sweep.yaml: params.wingbeat_lr: must be a non-empty list",)),
    Kind("sweep-grid-range", "sweep", sweep("task: wingbeat\nmodel: cnn\nmethod: grid\nparams:\n  wingbeat_lr: {min: 0.001, max: 0.01}\n"), ERROR, ("sweep.yaml: params.wingbeat_lr: a range needs method: random",)),
    Kind("sweep-grid-bad-value", "sweep", sweep("task: wingbeat\nmodel: cnn\nparams:\n  wingbeat_batch_size: [16, -4]\n"), ERROR, ("sweep.yaml: params (configuration 2): --wingbeat_batch_size: -4 is less than the minimum",)),
    Kind("sweep-not-yaml", "sweep", sweep("task: wingbeat\nparams: [unclosed\n"), ERROR, ("sweep.yaml: not valid YAML at line 3",)),
    # request bodies: the served wingbeat model (one that reads the whole recording)
    Kind("http-audio-empty", "http-audio", body(lambda: b""), ERROR, ("request body: empty body (0 bytes)",)),
    Kind("http-audio-wrong-content-type", "http-audio", body(lambda: make.wav_bytes(0.5), "text/plain"), ERROR, ("request body: Content-Type text/plain is not accepted",)),
    Kind("http-audio-50-MB", "http-audio", body(wav_50mb, "audio/wav"), ERROR, ("request body: recording is 3277 s", "serves at most 30 s")),
    Kind("http-audio-garbage", "http-audio", body(garbage), ERROR, ("request body: not a readable WAV file",)),
    Kind("http-audio-truncated", "http-audio", body(lambda: make.wav_bytes(1.0)[:300], "audio/wav"), ERROR, ("request body: truncated WAV",)),
    # request bodies: the served detector
    Kind("http-image-empty", "http-image", body(lambda: b"", "image/png"), ERROR, ("request body: empty",)),
    Kind("http-image-wrong-content-type", "http-image", body(lambda: make.encoded(make.noise(), "PNG"), "application/json"), ERROR, ("request body: Content-Type application/json is not accepted",)),
    Kind("http-image-garbage", "http-image", body(garbage, "image/jpeg"), ERROR, ("request body: not a readable image",)),
    Kind("http-image-bomb", "http-image", body(make.bomb_48mpx), ERROR, ("request body: image is 8000x6000 px (48.0 Mpx); at most 40 Mpx",)),
    Kind("http-image-16-bit", "http-image", body(make.png_16bit, "image/png"), ERROR, ("request body: 16-bit greyscale image",)),
    Kind("http-image-gif-animated", "http-image", body(make.gif_animated, "image/gif"), ACCEPTED),
]
# fmt: on


# ---------------------------------------------------------------- the CLI


PRE_EXISTING = b"an earlier run's output: must survive a failed run\n"
OUTPUTS = ("manifest.jsonl", "dataset.json")  # what a validate run replaces


def wingbeat_set(data: Path) -> Path:
    """2 species x 3 recording events, 0.2 s each: enough to validate and split."""
    (data / "rec").mkdir(parents=True)
    rows = ["path,species,event"]
    for s, species in enumerate(("aedes", "culex")):
        for e in range(1, 4):
            make.wav(data / "rec" / f"{species}_e{e}.wav", seed=10 * s + e)
            rows.append(f"rec/{species}_e{e}.wav,{species},e{e}")
    (data / "labels.csv").write_text("\n".join(rows) + "\n")
    return data / "labels.csv"


def validate_args(kind: Kind, tmp: Path) -> list:
    """Make the family's small dataset and let the kind spoil it; the CLI's arguments."""
    data = tmp / "data"
    if kind.input == "wingbeat":
        labels = wingbeat_set(data)
        kind.make(data)
        return ["wingbeat", "validate", "--labels", labels]
    if kind.input == "fewshot":
        labels = make.fewshot_set(data)
        kind.make(data)
        return ["fewshot", "validate", "--root", data, "--labels", labels]
    data.mkdir()
    return ["detector", "validate", "--root", data, "--labels", kind.make(data)]


def run_validate(kind: Kind, tmp: Path, run_cli, repo_root: Path, monkeypatch) -> None:
    out = tmp / "out"
    out.mkdir()
    for name in OUTPUTS:
        (out / name).write_bytes(PRE_EXISTING)
    done = run_cli(*validate_args(kind, tmp), "--out", out, *kind.args)
    if kind.expect == ACCEPTED:
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
        paths = [json.loads(line)["path"] for line in (out / "manifest.jsonl").read_text().splitlines()]
        assert kind.kept in paths and json.loads((out / "dataset.json").read_text())["version"]
        warnings = json.loads((out / "validation_report.json").read_text())["warnings"]
        assert all(any(fragment in w for w in warnings) for fragment in kind.says), warnings
        return
    assert_refused(done, kind)
    assert all((out / name).read_bytes() == PRE_EXISTING for name in OUTPUTS)
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    if kind.each:
        problems = json.loads((out / "validation_report.json").read_text())["problems"]
        assert len(problems) == len(kind.each), problems
        assert all(sum(fragment in p for p in problems) == 1 for fragment in kind.each), problems


def assert_refused(done, kind: Kind) -> None:
    last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert last.startswith("insectml: error: ") and all(f in last for f in kind.says), done.stderr


def base_params(tmp: Path) -> dict:
    return {"task": "wingbeat", "outdir": str(tmp / "results"), "seed": 1, "wingbeat_input": str(tmp)}


def run_params(kind: Kind, tmp: Path, run_cli, repo_root: Path, monkeypatch) -> None:
    params = json.dumps({**base_params(tmp), **kind.make(tmp)})
    assert_refused(
        run_cli("params", "validate", "--schema", repo_root / "nextflow_schema.json", "--params", params), kind
    )


def run_sweep(kind: Kind, tmp: Path, run_cli, repo_root: Path, monkeypatch) -> None:
    schema, params = repo_root / "nextflow_schema.json", json.dumps(base_params(tmp))
    assert_refused(run_cli("sweep", "plan", "--sweep", kind.make(tmp), "--schema", schema, "--params", params), kind)


# ---------------------------------------------------------------- the handlers, in-process


class Recordings:
    """A stand-in wingbeat model of the kind that reads the whole recording (features)."""

    classes, kind, inputs = ["aedes", "culex"], "classical", "engineered"

    def __init__(self) -> None:
        from insectml.wingbeat.frontend import FrontendConfig

        self.frontend = FrontendConfig()

    def predict_audio(self, audio):
        return {"aedes": 0.5, "culex": 0.5}


class Images:
    """A stand-in detector: no boxes, for any decoded image."""

    def predict(self, images):
        return [[] for _ in images]


def run_http(kind: Kind, tmp: Path, run_cli, repo_root: Path, monkeypatch) -> None:
    from mms.context import Context, RequestProcessor

    if kind.input == "http-audio":
        from insectml.serving import wingbeat_handler as handler

        service, good = handler.WingbeatService(), (make.wav_bytes(0.5, seed=1), "audio/wav")
        service.predictor = Recordings()
    else:
        from insectml.serving import detector_handler as handler

        service, good = handler.DetectorService(), (make.encoded(make.noise(seed=2), "JPEG"), "image/jpeg")
        service.predictor = Images()
    monkeypatch.setattr(handler, "_service", service)

    def batch(*requests: tuple[bytes, str]) -> tuple[list[int], list]:
        context = Context("m", str(tmp), {}, len(requests), None, "1.1.11")
        context.request_processor = [RequestProcessor({"body": {"content-type": ct}}) for _, ct in requests]
        answers = handler.handle([{"body": b} for b, _ in requests], context)
        json.dumps(answers)  # what MMS sends back must be JSON
        return [context.get_response_status(i)[0] for i in range(len(requests))], answers

    codes, answers = batch(kind.make(tmp), good)
    if kind.expect == ACCEPTED:
        assert codes == [200, 200] and "error" not in json.dumps(answers), answers
    else:
        assert 400 <= codes[0] < 500 and codes[1] == 200 and "error" not in answers[1], (codes, answers)
        assert set(answers[0]) == {"error"} and all(f in answers[0]["error"] for f in kind.says), answers[0]
    assert batch(good)[0] == [200]  # the server keeps answering


RUNNERS = {
    "wingbeat": run_validate,
    "fewshot": run_validate,
    "detector": run_validate,
    "params": run_params,
    "sweep": run_sweep,
    "http-audio": run_http,
    "http-image": run_http,
}


def test_the_corpus_has_30_kinds_over_every_input():
    names = [k.name for k in KINDS]
    assert len(set(names)) == len(names) >= 30 and {k.input for k in KINDS} == set(RUNNERS)
    # an error must say what is wrong; an accepted file is looked for in the new manifest
    assert all(k.says for k in KINDS if k.expect == ERROR)
    assert all(k.kept for k in KINDS if k.expect == ACCEPTED and RUNNERS[k.input] is run_validate)


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_bad_input(kind, tmp_path, run_cli, repo_root, monkeypatch):
    RUNNERS[kind.input](kind, tmp_path, run_cli, repo_root, monkeypatch)

"""The prediction log: one JSON line per answered request item, written by the MMS handlers
into ``<state>/predictions/`` for ``insectml monitor`` and ``insectml select``.

Each line: ``time`` (UTC, ISO 8601), ``family``, ``model`` and ``version`` (:func:`identity`),
``input`` (sha256, size, media type of the body), ``answer`` (the handler's JSON for the item),
``summary`` (what the monitor compares with the training data: ``{"features": {name: value}}``
for wingbeat, ``{"embedding": [...]}`` for images; ``{}`` when it was not computed),
``top_score``, ``unknown`` and ``input_file`` (the stored body, relative to the log folder,
or null). Items answered with a 4xx are not logged.

``predictions.jsonl`` is rotated to ``predictions.jsonl.1`` … ``.N`` (N = ``files``) before
a line would take it past ``max_bytes``; the oldest goes. Several worker processes append at
once: rotation and append happen under an exclusive ``flock`` on a lock file beside the log,
and each line is one ``write`` to a file opened for append. Raw bodies are kept (with
``inputs_folder``) under their sha256, each once, until ``inputs_max_bytes`` are stored;
then no more are kept (never deleted here: they are what gets labelled). Logging never
fails a request: an error while logging is counted (:attr:`PredictionLog.failures`) and
the first one is logged.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)

ENV_FOLDER = "INSECTML_PREDICTION_LOG"
ENV_MAX_BYTES = "INSECTML_PREDICTION_LOG_MAX_BYTES"
ENV_FILES = "INSECTML_PREDICTION_LOG_FILES"
ENV_SUMMARY_SHARE = "INSECTML_PREDICTION_LOG_SUMMARY_SHARE"
ENV_INPUTS = "INSECTML_LOG_INPUTS"
ENV_INPUTS_MAX_BYTES = "INSECTML_LOG_INPUTS_MAX_BYTES"
ENV_VARS = (ENV_FOLDER, ENV_MAX_BYTES, ENV_FILES, ENV_SUMMARY_SHARE, ENV_INPUTS, ENV_INPUTS_MAX_BYTES)

LOG_NAME = "predictions.jsonl"
LOCK_NAME = ".predictions.lock"
INPUTS = "inputs"  # the raw bodies, inside the log folder
STORED_BYTES = ".stored_bytes"  # inside the inputs folder: bytes of bodies stored so far

DEFAULT_MAX_BYTES = 50 * 10**6
DEFAULT_FILES = 5
DEFAULT_INPUTS_MAX_BYTES = 500 * 10**6
# The share of serving time a handler may spend on a summary its model does not compute
# anyway (wingbeat features for a model not trained on them); the rest of the lines get {}.
DEFAULT_SUMMARY_SHARE = 0.03

_EXTENSIONS = {"audio/wav": "wav", "audio/x-wav": "wav", "audio/wave": "wav", "image/png": "png", "image/jpeg": "jpg"}
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF8", "image/gif"))


@dataclass(frozen=True)
class LogSettings:
    """What ``insectml serve start`` asks of its workers' prediction log."""

    max_bytes: int = DEFAULT_MAX_BYTES
    files: int = DEFAULT_FILES
    inputs: bool = False
    inputs_max_bytes: int = DEFAULT_INPUTS_MAX_BYTES
    summary_share: float = DEFAULT_SUMMARY_SHARE

    def problems(self) -> list[str]:
        """One sentence per setting out of range, naming its ``insectml serve start`` flag."""
        out = []
        if self.max_bytes <= 0:
            out.append(f"--log-max-bytes {self.max_bytes}: expected a positive number of bytes")
        if self.files < 1:
            out.append(f"--log-files {self.files}: expected at least 1")
        if self.inputs_max_bytes < 0:
            out.append(f"--log-inputs-max-bytes {self.inputs_max_bytes}: expected a number of bytes")
        if not 0 <= self.summary_share <= 1:
            out.append(f"--log-summary-share {self.summary_share}: expected a fraction in [0, 1]")
        return out

    def env(self, folder: Path) -> dict[str, str]:
        """The environment variables that make a worker log into ``folder``."""
        out = {
            ENV_FOLDER: str(folder),
            ENV_MAX_BYTES: str(self.max_bytes),
            ENV_FILES: str(self.files),
            ENV_SUMMARY_SHARE: repr(float(self.summary_share)),
        }
        if self.inputs:
            out[ENV_INPUTS] = str(Path(folder) / INPUTS)
            out[ENV_INPUTS_MAX_BYTES] = str(self.inputs_max_bytes)
        return out


class PredictionLog:
    """Appends prediction lines to ``folder/predictions.jsonl``; see the module docstring."""

    def __init__(
        self,
        folder: Path,
        max_bytes: int = DEFAULT_MAX_BYTES,
        files: int = DEFAULT_FILES,
        inputs_folder: Path | None = None,
        inputs_max_bytes: int = DEFAULT_INPUTS_MAX_BYTES,
        summary_share: float = DEFAULT_SUMMARY_SHARE,
    ) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOG_NAME
        self.max_bytes = max_bytes
        self.files = max(1, files)
        self.inputs_folder = Path(inputs_folder) if inputs_folder is not None else None
        self.inputs_max_bytes = inputs_max_bytes
        self.summary_share = summary_share
        self.failures = 0
        self.lines = 0
        self._lock_fd: int | None = None
        self._lock_pid: int | None = None
        self._thread_lock = threading.Lock()
        self._inputs_full_until = 0.0

    @classmethod
    def from_env(cls, environ: dict | None = None) -> PredictionLog | None:
        """The log the environment asks for (:data:`ENV_VARS`); None when
        ``INSECTML_PREDICTION_LOG`` is unset or empty. A malformed number falls back to its
        default, with a warning: a worker serves whatever its log settings."""
        env = os.environ if environ is None else environ
        folder = env.get(ENV_FOLDER)
        if not folder:
            return None

        def number(key, kind, default):
            try:
                return kind(env[key]) if env.get(key) else default
            except ValueError:
                log.warning("%s=%r is not a number; using %s", key, env[key], default)
                return default

        inputs = env.get(ENV_INPUTS) or None
        return cls(
            Path(folder),
            max_bytes=number(ENV_MAX_BYTES, int, DEFAULT_MAX_BYTES),
            files=number(ENV_FILES, int, DEFAULT_FILES),
            inputs_folder=Path(inputs) if inputs else None,
            inputs_max_bytes=number(ENV_INPUTS_MAX_BYTES, int, DEFAULT_INPUTS_MAX_BYTES),
            summary_share=number(ENV_SUMMARY_SHARE, float, DEFAULT_SUMMARY_SHARE),
        )

    def append(
        self,
        family: str,
        model: str,
        version: str,
        body: bytes,
        media_type: str,
        answer,
        summary: dict,
        top_score: float | None,
        unknown: bool,
    ) -> bool:
        """Log one answered item; True if its line was written. Never raises."""
        try:
            body = bytes(body or b"")
            sha = hashlib.sha256(body).hexdigest()
            media_type = media_type if media_type not in ("", "application/octet-stream") else sniff(body)
            record = {
                "time": datetime.now(UTC).isoformat(timespec="microseconds"),
                "family": family,
                "model": model,
                "version": version,
                "input": {"sha256": sha, "bytes": len(body), "media_type": media_type},
                "answer": answer,
                "summary": summary,
                "top_score": None if top_score is None else float(top_score),
                "unknown": bool(unknown),
                "input_file": None,
            }
            with self._locked():
                if self.inputs_folder is not None:
                    try:
                        record["input_file"] = self._store_input(sha, body, media_type)
                    except OSError as exc:  # the line without its input rather than no line
                        self.failed(exc)
                line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
                self._rotate_for(len(line))
                _write_all(self.path, line)
            self.lines += 1
            return True
        except Exception as exc:  # logging must never fail the request it logs
            self.failed(exc)
            return False

    def failed(self, exc: BaseException) -> None:
        """Count a logging error; the first one goes to the worker's log."""
        self.failures += 1
        if self.failures == 1:
            log.warning("prediction log %s: %s (further errors are counted, not shown)", self.path, exc, exc_info=exc)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Exclusive across threads and processes: a thread lock, then ``flock`` on the lock
        file (opened again in a forked child, whose inherited descriptor would share the
        parent's lock)."""
        with self._thread_lock:
            if self._lock_fd is None or self._lock_pid != os.getpid():
                self.folder.mkdir(parents=True, exist_ok=True)
                self._lock_fd = os.open(self.folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
                self._lock_pid = os.getpid()
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _rotate_for(self, size: int) -> None:
        try:
            current = self.path.stat().st_size
        except FileNotFoundError:
            return
        if current == 0 or current + size <= self.max_bytes:
            return
        for n in range(self.files, 0, -1):
            older = self.path if n == 1 else self.path.with_name(f"{LOG_NAME}.{n - 1}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{LOG_NAME}.{n}"))

    def _store_input(self, sha: str, body: bytes, media_type: str) -> str | None:
        """The stored body's path (relative to the log folder when inside it), storing it
        unless it is there already or the cap is reached (then None)."""
        folder = self.inputs_folder
        target = folder / f"{sha}.{_EXTENSIONS.get(media_type, 'bin')}"
        if not target.is_file():
            if time.monotonic() < self._inputs_full_until:
                return None
            folder.mkdir(parents=True, exist_ok=True)
            stored = _stored_bytes(folder)
            if stored + len(body) > self.inputs_max_bytes:
                stored = _measure(folder)  # bodies deleted since (after labelling) free room
                if stored + len(body) > self.inputs_max_bytes:
                    _write_stored(folder, stored)
                    self._inputs_full_until = time.monotonic() + 60
                    return None
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            tmp.write_bytes(body)
            os.replace(tmp, target)
            _write_stored(folder, stored + len(body))
        try:
            return str(target.relative_to(self.folder))
        except ValueError:
            return str(target)


def _write_all(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _stored_bytes(folder: Path) -> int:
    try:
        return int((folder / STORED_BYTES).read_text())
    except (FileNotFoundError, ValueError):
        return _measure(folder)


def _measure(folder: Path) -> int:
    return sum(e.stat().st_size for e in os.scandir(folder) if e.is_file() and not e.name.startswith("."))


def _write_stored(folder: Path, total: int) -> None:
    tmp = folder / f"{STORED_BYTES}.{os.getpid()}.tmp"
    tmp.write_text(str(total))
    os.replace(tmp, folder / STORED_BYTES)


def sniff(body: bytes) -> str:
    """The media type of a body whose client named none, from its first bytes."""
    if body[:4] == b"RIFF" and body[8:12] == b"WAVE":
        return "audio/wav"
    for magic, media in _MAGIC:
        if body.startswith(magic):
            return media
    return "application/octet-stream"


def identity(model_dir: Path) -> tuple[str, str]:
    """(model, version) of a served model folder. model: the archive's name (``archive.json``,
    the name it was packaged under), else config.json's ``model``, else the folder's name.
    version: lineage.json's ``version`` when it has one, else the first 12 hex digits of the
    sha256 of its weights, the one lineage.json records for the first of
    :data:`~insectml.modeldir.WEIGHTS_FILES` present (so it matches the trained model
    folder's lineage), computed when none is recorded; "" when there are no weights."""
    from insectml.modeldir import WEIGHTS_FILES, file_sha256

    model_dir = Path(model_dir)

    def read(name: str) -> dict:
        try:
            value = json.loads((model_dir / name).read_text())
        except (OSError, ValueError):
            return {}
        return value if isinstance(value, dict) else {}

    name = read("archive.json").get("name") or read("config.json").get("model") or model_dir.name
    lineage = read("lineage.json")
    if lineage.get("version"):
        return str(name), str(lineage["version"])
    recorded = lineage.get("sha256") if isinstance(lineage.get("sha256"), dict) else {}
    for weights in WEIGHTS_FILES:
        if recorded.get(weights):
            return str(name), str(recorded[weights])[:12]
    for weights in WEIGHTS_FILES:
        try:
            return str(name), file_sha256(model_dir / weights)[:12]
        except OSError:
            continue
    return str(name), ""


class Budget:
    """Optional work kept under a share of the serving time: :meth:`allows` says yes while
    the time spent on it is at most ``share`` × the time spent serving (always at 1)."""

    def __init__(self, share: float) -> None:
        self.share = share
        self.served = 0.0
        self.spent = 0.0

    def allows(self) -> bool:
        return self.share >= 1 or (self.share > 0 and self.spent <= self.share * self.served)


def compact(values: Iterable[float]) -> list[float]:
    """Floats for a line: 6 significant digits (float32 holds about 7)."""
    return [float(f"{v:.6g}") for v in values]


def is_error(answer) -> bool:
    """An item :func:`~insectml.serving.batch.answer_batch` answered with a 4xx."""
    return isinstance(answer, dict) and set(answer) == {"error"}


def log_answers(
    plog: PredictionLog | None,
    family: str,
    model: tuple[str, str],
    data: list[dict],
    context,
    answers: list,
    summaries: Iterable[dict],
    scores: Callable[[object], tuple[float | None, bool]],
) -> None:
    """Append a line for each answered item of an MMS batch (4xx items skipped).
    ``summaries``: one per answered item, in order (the order ``predict`` got them);
    ``scores(answer)`` → (top_score, unknown). Never raises."""
    if plog is None:
        return
    try:
        from insectml.serving.batch import content_type

        summaries = iter(summaries)
        for idx, answer in enumerate(answers):
            if is_error(answer):
                continue
            summary = next(summaries, {})
            field = "body" if data[idx].get("body") is not None else "data"
            top, unknown = scores(answer)
            plog.append(
                family,
                *model,
                data[idx].get(field),
                content_type(context, idx, field),
                answer,
                summary,
                top,
                unknown,
            )
    except Exception as exc:
        plog.failed(exc)

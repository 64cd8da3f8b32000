import io

import numpy as np
import pytest
import soundfile as sf
from insectml.errors import InputFileError
from insectml.wingbeat.audio import decode_wav


def write(path, data, rate=8000, subtype="PCM_16"):
    sf.write(path, data, rate, subtype=subtype)
    return path


def test_reads_mono_recording(tmp_path):
    path = write(tmp_path / "ok.wav", np.linspace(-0.5, 0.5, 800, dtype=np.float32))
    assert decode_wav(path, 8000).shape == (800,)


def test_decodes_bytes_like_a_request_body(tmp_path):
    path = write(tmp_path / "ok.wav", np.zeros(400, dtype=np.float32) + 0.1)
    assert decode_wav(path.read_bytes(), 8000).shape == (400,)


@pytest.mark.parametrize(
    "make, problem",
    [
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_bytes(b"RIFF0000WAVEnot really audio"), "not a readable WAV"),
        (lambda p: write(p, np.zeros((800, 2), dtype=np.float32)), "2 channels"),
        (lambda p: write(p, np.zeros(800, dtype=np.float32), rate=16000), "sample rate is 16000 Hz"),
        (lambda p: write(p, np.array([0.1, np.nan, 0.2] * 100, dtype=np.float32), subtype="FLOAT"), "NaN"),
        (lambda p: write(p, np.array([0.1, np.inf, 0.2] * 100, dtype=np.float32), subtype="FLOAT"), "infinite"),
        (lambda p: write(p, np.zeros(0, dtype=np.float32)), "no samples"),
    ],
    ids=["empty", "corrupt", "stereo", "rate", "nan", "inf", "zero-length"],
)
def test_bad_recordings_name_file_and_problem(tmp_path, make, problem):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(InputFileError, match=problem) as info:
        decode_wav(path, 8000)
    assert str(info.value).startswith(str(path))


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(InputFileError, match="file not found"):
        decode_wav(tmp_path / "nope.wav", 8000)


def wav_bytes(samples: int, fmt: str = "WAV", subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.linspace(-0.5, 0.5, samples, dtype=np.float32), 8000, format=fmt, subtype=subtype)
    return buffer.getvalue()


def test_libsndfile_alone_reads_a_cut_wav_as_a_short_one():
    """Why decode_wav reads the header itself: libsndfile clamps the frame count silently."""
    assert sf.info(io.BytesIO(wav_bytes(8000)[:300])).frames == 128


@pytest.mark.parametrize(
    "fmt, subtype", [("WAV", "PCM_16"), ("WAV", "FLOAT"), ("WAVEX", "PCM_24"), ("RF64", "PCM_16"), ("WAV", "ULAW")]
)
def test_truncated_wav_names_frames_promised_and_held(tmp_path, fmt, subtype):
    path = tmp_path / "cut.wav"
    path.write_bytes(wav_bytes(8000, fmt, subtype)[:300])
    held = sf.info(path).frames  # what libsndfile would have decoded
    with pytest.raises(InputFileError) as info:
        decode_wav(path, 8000)
    assert str(info.value) == f"{path}: truncated WAV: header promises 8000 frames, file holds {held}"


def test_truncated_body_is_refused_too():
    with pytest.raises(
        InputFileError, match="request body: truncated WAV: header promises 8000 frames, file holds 7999"
    ):
        decode_wav(wav_bytes(8000)[:-1], 8000, name="request body")


def test_compressed_wav_cut_short_is_counted_in_bytes():
    with pytest.raises(InputFileError, match=r"truncated WAV: header promises \d+ bytes of audio, file holds 240"):
        decode_wav(wav_bytes(8000, subtype="IMA_ADPCM")[:300], 8000, name="adpcm")


@pytest.mark.parametrize(
    "edit",
    [
        lambda b: b + b"LIST" + (4).to_bytes(4, "little") + b"INFO",  # a chunk after the data
        lambda b: b.replace(b"data" + (16000).to_bytes(4, "little"), b"data\xff\xff\xff\xff"),  # streamed: size unknown
    ],
    ids=["trailing-chunk", "streamed"],
)
def test_complete_wavs_are_not_called_truncated(edit):
    assert decode_wav(edit(wav_bytes(8000)), 8000, name="ok").shape == (8000,)


def test_recording_shorter_than_min_seconds_is_refused(tmp_path):
    path = write(tmp_path / "short.wav", np.full(300, 0.1, dtype=np.float32))
    with pytest.raises(InputFileError) as info:
        decode_wav(path, 8000, min_seconds=0.1)
    assert str(info.value) == f"{path}: recording is 0.0375 s; at least 0.1 s required (--wingbeat_min_seconds)"


def test_recording_of_exactly_min_seconds_is_kept(tmp_path):
    path = write(tmp_path / "ok.wav", np.full(800, 0.1, dtype=np.float32))
    assert decode_wav(path, 8000, min_seconds=0.1).shape == (800,)


def test_demo_recordings_pass_the_default_minimum(tiny_wingbeat):
    from insectml.wingbeat.family import PARAMS

    shortest = min(sf.info(p).duration for p in (tiny_wingbeat / "recordings").rglob("*.wav"))
    assert shortest >= 3 * PARAMS.default("wingbeat_min_seconds")

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

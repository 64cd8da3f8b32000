import numpy as np
import pytest
import torch
from insectml.data.demo import SPECIES, _event_background, synthesise
from insectml.wingbeat.features import log_mel
from insectml.wingbeat.frontend import FrontendConfig, batch_log_mel

# The documented bounds of our batched log-mel vs librosa's, same parameters (dB).
MAX_ABS_DB = {torch.float32: 1e-3, torch.float64: 1e-4}


@pytest.fixture(scope="module")
def recordings():
    rng = np.random.default_rng(5)
    profiles = list(SPECIES.values())
    return [synthesise(profiles[i % 5], _event_background(i % 12), rng) for i in range(24)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_matches_librosa_within_bound(recordings, dtype):
    cfg = FrontendConfig()
    ours, frames = batch_log_mel(recordings, cfg, batch_size=7, dtype=dtype)
    reference = np.stack([log_mel(a, cfg)[0] for a in recordings])
    assert np.abs(ours - reference).max() <= MAX_ABS_DB[dtype]
    assert frames.tolist() == [log_mel(a, cfg)[1] for a in recordings]

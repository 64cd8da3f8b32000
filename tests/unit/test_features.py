import numpy as np
from insectml.wingbeat.features import engineered_features, feature_names, log_mel
from insectml.wingbeat.frontend import FrontendConfig, fit_length


def tone(f0=450.0, seconds=0.8, sr=8000):
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * f0 * t) + 0.2 * np.sin(4 * np.pi * f0 * t)).astype(np.float32)


def test_padding_and_cropping_are_explicit():
    padded, real = fit_length(np.ones(10, dtype=np.float32), 16)
    cropped, kept = fit_length(np.arange(20, dtype=np.float32), 16)
    assert (padded.shape, real, cropped[0], kept) == ((16,), 10, 2.0, 16)


def test_log_mel_has_fixed_shape_and_counts_real_frames():
    cfg = FrontendConfig()
    mel, frames = log_mel(tone(seconds=0.5), cfg)
    assert mel.shape == (cfg.n_mels, cfg.max_frames) and frames == 1 + 4000 // cfg.hop_length


def test_engineered_features_find_the_fundamental():
    values = engineered_features(tone(f0=450.0), FrontendConfig())
    assert len(values) == len(feature_names())
    assert abs(values[0] - 450.0) < 10

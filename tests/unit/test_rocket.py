import io
import itertools

import numpy as np
import pytest
import torch
from insectml.wingbeat.rocket import KERNELS, MiniRocket, make_rocket_head


def _sines(n: int, channels: int, length: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three classes of noisy sines of different frequency, varying length, zero padding on the right."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    frames = rng.integers(length * 7 // 10, length + 1, size=n)
    t = np.arange(length)[None, None, :]
    freq = np.array([0.05, 0.09, 0.14])[y][:, None, None]
    phase = rng.uniform(0, 2 * np.pi, size=(n, channels, 1))
    x = np.sin(2 * np.pi * freq * t + phase) + 0.5 * rng.standard_normal((n, channels, length))
    x = np.where(np.arange(length)[None, None, :] < frames[:, None, None], x, 0.0)
    return x.astype(np.float32), frames, y


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The caller owns torch's thread count; one thread keeps these tests fast on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data():
    return _sines(90, 8, 100, seed=0)


@pytest.fixture(scope="module")
def fitted(data):
    x, frames, _ = data
    return MiniRocket(num_features=2000, seed=1).fit(x, frames)


def test_kernels_are_the_84_choices_of_three_twos():
    twos = {tuple(np.flatnonzero(k == 2)) for k in KERNELS}
    assert twos == set(itertools.combinations(range(9), 3)) and len(KERNELS) == 84


def test_kernels_sum_to_zero_with_weights_minus_one_and_two():
    assert set(np.unique(KERNELS)) == {-1.0, 2.0} and np.all(KERNELS.sum(axis=1) == 0)


def test_transform_shape_and_dtype(data, fitted):
    x, frames, _ = data
    feats = fitted.transform(x[:10], frames[:10], batch=4)
    assert (feats.shape, feats.dtype) == ((10, 1932), np.float32)  # 2000 rounded down to 23 × 84


def test_features_are_proportions(data, fitted):
    feats = fitted.transform(data[0], data[1])
    assert feats.min() >= 0.0 and feats.max() <= 1.0 and feats.std() > 0.1


def test_same_seed_gives_identical_features(data, fitted):
    x, frames, _ = data
    again = MiniRocket(num_features=2000, seed=1).fit(x, frames)
    np.testing.assert_array_equal(again.transform(x, frames), fitted.transform(x, frames))


def test_different_seed_gives_different_features(data, fitted):
    x, frames, _ = data
    other = MiniRocket(num_features=2000, seed=2).fit(x, frames)
    assert not np.array_equal(other.transform(x, frames), fitted.transform(x, frames))


def test_state_round_trip_through_npz_gives_identical_features(data, fitted):
    x, frames, _ = data
    buffer = io.BytesIO()
    np.savez(buffer, **fitted.state_dict())
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as state:
        restored = MiniRocket.from_state(state)
    np.testing.assert_array_equal(restored.transform(x, frames), fitted.transform(x, frames))


def test_padding_beyond_frames_does_not_change_features(data, fitted):
    x, frames, _ = data
    longer = np.full((len(x), x.shape[1], 160), -100.0, dtype=np.float32)  # dB floor, not zeros
    longer[:, :, : x.shape[2]] = x
    longer = np.where(np.arange(160)[None, None, :] < frames[:, None, None], longer, np.float32(-100.0))
    np.testing.assert_array_equal(fitted.transform(longer, frames), fitted.transform(x, frames))


def test_rocket_and_head_classify_held_out_sines(data):
    x, frames, y = data
    rocket = MiniRocket(num_features=2000, seed=0).fit(x[:60], frames[:60])
    head = make_rocket_head(seed=0).fit(rocket.transform(x[:60], frames[:60]), y[:60])
    accuracy = (head.predict(rocket.transform(x[60:], frames[60:])) == y[60:]).mean()
    assert accuracy > 0.9


def test_univariate_input_works():
    x, frames, y = _sines(30, 1, 80, seed=3)
    feats = MiniRocket(num_features=840, seed=0).fit(x, frames).transform(x, frames)
    assert feats.shape == (30, 840) and np.isfinite(feats).all()

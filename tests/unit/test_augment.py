"""The few-recordings options of the neural wingbeat models: mixup's soft targets, the
pitch jitter on the log-mel axis, stochastic weight averaging in the shared loop (with
resume), and the same seed giving the same weights with all of them on."""

from dataclasses import replace

import pytest
import torch
from insectml.training.loop import LoopConfig, fit
from insectml.wingbeat.frontend import FrontendConfig
from insectml.wingbeat.nets import create_net
from insectml.wingbeat.train_net import NetConfig, augment, mel_band_hz, mixup, shift_pitch, train_net

BANDS = torch.as_tensor(mel_band_hz(FrontendConfig(n_mels=32)), dtype=torch.float32)


def test_mixup_targets_sum_to_one():
    torch.manual_seed(0)
    x, frames, y = torch.randn(8, 16, 20), torch.full((8,), 20), torch.arange(8) % 3
    _, _, target = mixup(x, frames, y, n_classes=3, alpha=0.4)
    assert torch.allclose(target.sum(1), torch.ones(8))


def test_mixup_soft_targets_train_a_net():
    torch.manual_seed(0)
    model = create_net("gru", n_classes=3, n_mels=16)
    x, frames, y = torch.randn(8, 16, 20), torch.tensor([20, 15] * 4), torch.arange(8) % 3
    mixed, mixed_frames, target = mixup(x, frames, y, n_classes=3, alpha=0.4)
    loss = torch.nn.CrossEntropyLoss()(model(mixed, mixed_frames), target)
    loss.backward()
    assert torch.isfinite(loss) and model.head[1].weight.grad.abs().sum() > 0


def test_pitch_shift_keeps_the_shape():
    x = torch.randn(32, 50)
    assert shift_pitch(x, 1.08, BANDS).shape == x.shape


def test_pitch_shift_by_one_is_the_identity():
    x = torch.randn(32, 50)
    assert torch.equal(shift_pitch(x, 1.0, BANDS), x)


def test_pitch_shift_moves_a_tone_by_the_ratio():
    x = torch.full((32, 5), -80.0)
    x[12] = 0.0  # a tone at band 12's centre frequency
    peak = int(shift_pitch(x, 1.2, BANDS)[:, 0].argmax())
    assert float(BANDS[peak]) == pytest.approx(1.2 * float(BANDS[12]), rel=0.06)


def test_no_pitch_jitter_is_the_augmentation_of_before():
    x = torch.randn(32, 50)
    torch.manual_seed(3)
    before = augment(x.clone(), 40)
    torch.manual_seed(3)
    assert torch.equal(augment(x.clone(), 40, 0.0, BANDS), before)


class BatchNormNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 1))

    def forward(self, x):
        return self.net(x)


def toy():
    torch.manual_seed(0)
    x = torch.randn(32, 3)
    return BatchNormNet(), torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True))


def mse(model, batch, device):
    x, y = (t.to(device) for t in batch)
    return torch.nn.functional.mse_loss(model(x), y)


def swa_config(out):
    return LoopConfig(out_dir=out, epochs=5, batch_size=8, keep="last", device="cpu", swa_epochs=2)


def test_swa_keeps_weights_other_than_the_last_epochs(tmp_path):
    model, data = toy()
    fit(model, data, mse, None, swa_config(tmp_path))
    last = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["model"]
    kept = torch.load(tmp_path / "weights.pt", weights_only=True)
    assert not torch.equal(kept["net.0.weight"], last["net.0.weight"])


def test_swa_weights_load_and_predict(tmp_path):
    model, data = toy()
    fit(model, data, mse, None, swa_config(tmp_path))
    fresh = BatchNormNet()
    fresh.load_state_dict(torch.load(tmp_path / "weights.pt", weights_only=True))
    with torch.no_grad():
        assert torch.isfinite(fresh.eval()(torch.randn(4, 3))).all()


def test_swa_killed_in_the_averaged_epochs_resumes_to_the_same_average(tmp_path):
    model, data = toy()
    fit(model, data, mse, None, swa_config(tmp_path / "straight"))
    seen = {"batches": 0}

    def dies_in_the_last_epoch(model, batch, device):
        seen["batches"] += 1
        if seen["batches"] > 4 * 4:  # 4 batches an epoch: killed in epoch 5, after averaging epoch 4
            raise KeyboardInterrupt
        return mse(model, batch, device)

    cfg = swa_config(tmp_path / "resumed")
    model, data = toy()
    with pytest.raises(KeyboardInterrupt):
        fit(model, data, dies_in_the_last_epoch, None, cfg)
    model, data = toy()
    fit(model, data, mse, None, replace(cfg, resume=True))
    straight = torch.load(tmp_path / "straight" / "weights.pt", weights_only=True)
    resumed = torch.load(tmp_path / "resumed" / "weights.pt", weights_only=True)
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


@pytest.fixture(scope="module")
def features(tiny_wingbeat, run_cli, tmp_path_factory):
    out = tmp_path_factory.mktemp("augment")
    assert run_cli("wingbeat", "validate", "--labels", tiny_wingbeat / "labels.csv", "--out", out).returncode == 0
    done = run_cli(
        "wingbeat",
        "features",
        *("--manifest", out / "manifest.jsonl", "--dataset", out / "dataset.json"),
        *("--data", tiny_wingbeat, "--n-mels", "16", "--out", out / "features.npz"),
    )
    assert done.returncode == 0, done.stderr
    return out / "features.npz"


def test_same_seed_same_weights_with_every_option(features, tmp_path):
    def weights(out):
        cfg = NetConfig(features=features, out_dir=out, model="gru", mixup=0.4, pitch_jitter=0.08, swa=True)
        train_net(replace(cfg, loop=replace(cfg.loop, epochs=3, batch_size=16, seed=5)))
        return torch.load(out / "weights.pt", weights_only=True)

    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_swa_is_part_of_the_checkpoint_key(tmp_path):
    from insectml.training.loop import checkpoint_key

    cfg = LoopConfig(out_dir=tmp_path, epochs=5, keep="last")
    assert checkpoint_key(cfg) != checkpoint_key(replace(cfg, swa_epochs=2))

"""The shared training loop on a toy regression: a diverging loss stops with a user error,
checkpoints load without pickled code, and the checkpoint key ignores where a run happens."""

from dataclasses import replace

import pytest
import torch
from insectml.errors import UserError
from insectml.training.loop import LoopConfig, TrainingDiverged, checkpoint_key, fit


def toy(n: int = 16):
    torch.manual_seed(0)
    x = torch.randn(n, 3)
    return torch.nn.Linear(3, 1), torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True))


def mse(model, batch, device):
    x, y = (t.to(device) for t in batch)
    return torch.nn.functional.mse_loss(model(x), y)


def score(model, device):
    return {"macro_f1": 0.0}


def test_a_nan_loss_stops_with_the_epoch_and_step(tmp_path):
    model, data = toy()

    def explodes(model, batch, device):
        return mse(model, batch, device) * float("nan")

    cfg = LoopConfig(out_dir=tmp_path, epochs=2, batch_size=4, device="cpu")
    with pytest.raises(TrainingDiverged, match=r"nan at epoch 1, step 1/4 .*lower --lr") as info:
        fit(model, data, explodes, score, cfg)
    assert isinstance(info.value, UserError)


def test_the_checkpoint_loads_with_weights_only(tmp_path):
    model, data = toy()
    fit(model, data, mse, score, LoopConfig(out_dir=tmp_path, epochs=2, batch_size=4, device="cpu"))
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == 2 and len(state["history"]) == 2


def test_the_checkpoint_key_ignores_where_and_how_fast(tmp_path):
    cfg = LoopConfig(out_dir=tmp_path / "a", epochs=3)
    elsewhere = replace(cfg, out_dir=tmp_path / "b", threads=8, device="cuda", checkpoint_dir=tmp_path, resume=True)
    assert checkpoint_key(cfg) == checkpoint_key(elsewhere) != checkpoint_key(replace(cfg, lr=0.5))


def test_a_family_fingerprint_leaves_the_loop_settings_to_the_key(tmp_path):
    from insectml.training.loop import config_fingerprint
    from insectml.wingbeat.train_net import NetConfig

    a = NetConfig(features=tmp_path / "features.npz", out_dir=tmp_path / "a", model="gru")
    b = replace(a, out_dir=tmp_path / "b", loop=replace(a.loop, threads=8, lr=0.1))
    fp = config_fingerprint
    assert fp(a, "features") == fp(b, "features") != fp(replace(a, augment=False), "features")


@pytest.mark.parametrize("n, batches", [(9, 2), (8, 2), (10, 3)])
def test_a_last_batch_of_one_sample_is_dropped(tmp_path, n, batches):
    """Batch norm cannot train on one sample: 9 samples in batches of 4 make 2 batches, not 3."""
    from insectml.training.loop import _epoch_loader

    cfg = LoopConfig(out_dir=tmp_path, batch_size=4)
    data = torch.utils.data.TensorDataset(torch.zeros(n, 2))
    assert len(_epoch_loader(data, cfg, 1, None, None)) == batches

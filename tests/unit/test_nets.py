import pytest
import torch
from insectml.errors import ConfigError, InputFileError
from insectml.wingbeat.nets import create_net


@pytest.mark.parametrize("name", ["gru", "transformer"])
def test_padding_does_not_change_the_answer(name):
    torch.manual_seed(0)
    model = create_net(name, n_classes=3, n_mels=16).eval()
    x = torch.randn(1, 16, 20)
    padded = torch.cat([x, torch.full((1, 16, 15), 7.0)], dim=2)
    frames = torch.tensor([20])
    with torch.no_grad():
        assert torch.allclose(model(x, frames), model(padded, frames), atol=1e-5)


def test_cnn_is_a_timm_backbone_on_one_channel():
    model = create_net("cnn", n_classes=4, n_mels=32, backbone="mobilenetv3_small_050")
    assert model(torch.randn(2, 32, 40), torch.tensor([40, 30])).shape == (2, 4)


def test_local_weights_initialise_matching_layers(tmp_path):
    source = create_net("gru", n_classes=3, n_mels=16)
    torch.save(source.state_dict(), tmp_path / "w.pt")
    target = create_net("gru", n_classes=3, n_mels=16, weights=tmp_path / "w.pt")
    assert all(
        torch.equal(a, b) for a, b in zip(source.state_dict().values(), target.state_dict().values(), strict=True)
    )


def test_bad_weights_and_names_are_user_errors(tmp_path):
    (tmp_path / "w.pt").write_bytes(b"junk")
    with pytest.raises(InputFileError, match="not a readable state dict"):
        create_net("gru", n_classes=3, n_mels=16, weights=tmp_path / "w.pt")
    with pytest.raises(ConfigError, match="unknown wingbeat net"):
        create_net("lstm", n_classes=3, n_mels=16)

"""laxai_trainer.reid.models.model: architecture knobs, output, ImageNet weight loading."""

import pytest
import torch
from torch import nn
from torchvision.models import resnet18

from laxai_trainer.config import ModelKwargs
from laxai_trainer.reid.models.model import (
    CBAM,
    INPUT_SIZE,
    ReIDNet,
    apply_imagenet,
    architecture,
    build_model,
    imagenet_cache_path,
    load_imagenet_state,
)


def crops(n=2, seed=0):
    return torch.randn(n, 3, *INPUT_SIZE, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("dim", [8, 24])
def test_embedding_dim_sets_output_shape_and_output_is_unit_norm(dim):
    model = build_model(ModelKwargs(embedding_dim=dim)).eval()
    with torch.no_grad():
        out = model(crops())
    assert out.shape == (2, dim)
    assert torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)


def test_stem_is_3x3_stride_1_and_keeps_resolution():
    model = ReIDNet(embedding_dim=8)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    seen = {}
    model.layer1.register_forward_hook(lambda m, i, o: seen.update(layer1=o.shape))
    with torch.no_grad():
        model.eval()(crops(1))
    # 3x3/1 stem, then the 2x2 max-pool: layer1 works at half the input resolution
    assert seen["layer1"][2:] == (INPUT_SIZE[0] // 2, INPUT_SIZE[1] // 2)


def test_attention_layers_place_cbam_after_the_named_stages_only():
    model = build_model(ModelKwargs(embedding_dim=8, attention_layers=["layer1", "layer3"]))
    assert model.cbam_stages() == ["layer1", "layer3"]
    assert isinstance(model.cbam1, CBAM) and isinstance(model.cbam3, CBAM)
    assert isinstance(model.cbam2, nn.Identity) and isinstance(model.cbam4, nn.Identity)
    # each CBAM receives its stage's output (channel count proves the position)
    channels = {}
    model.cbam1.register_forward_hook(lambda m, i, o: channels.update(cbam1=i[0].shape[1]))
    model.cbam3.register_forward_hook(lambda m, i, o: channels.update(cbam3=i[0].shape[1]))
    with torch.no_grad():
        model.eval()(crops(1))
    assert channels == {"cbam1": 64, "cbam3": 256}


def test_default_attention_layers_are_layer2_to_4():
    assert build_model(ModelKwargs(embedding_dim=8)).cbam_stages() == ["layer2", "layer3", "layer4"]


def test_use_cbam_false_places_no_attention_at_all():
    model = build_model(ModelKwargs(embedding_dim=8, use_cbam=False, attention_layers=["layer1", "layer2"]))
    assert model.cbam_stages() == []
    assert not any(isinstance(m, CBAM) for m in model.modules())


def test_cbam_changes_the_function():
    torch.manual_seed(0)
    with_cbam = build_model(ModelKwargs(embedding_dim=8, attention_layers=["layer4"])).eval()
    torch.manual_seed(0)
    without = build_model(ModelKwargs(embedding_dim=8, use_cbam=False)).eval()
    x = crops()
    with torch.no_grad():
        assert not torch.allclose(with_cbam(x), without(x))


def test_cbam_is_channel_then_spatial_attention():
    cbam = CBAM(32)
    x = torch.randn(2, 32, 6, 4)
    with torch.no_grad():
        expected = x * cbam.channel(x)
        expected = expected * cbam.spatial(expected)
        assert torch.allclose(cbam(x), expected)
        assert cbam.channel(x).shape == (2, 32, 1, 1)  # one weight per channel
        assert cbam.spatial(x).shape == (2, 1, 6, 4)  # one weight per position


def test_dropout_rate_reaches_the_head_dropout():
    model = build_model(ModelKwargs(embedding_dim=8, dropout_rate=0.37))
    assert model.dropout.p == pytest.approx(0.37)
    assert isinstance(model.embedding, nn.Linear) and model.embedding.in_features == 512


def test_dropout_acts_in_training_mode_only():
    x = crops(4)
    noisy = build_model(ModelKwargs(embedding_dim=8, dropout_rate=0.9)).train()
    plain = build_model(ModelKwargs(embedding_dim=8, dropout_rate=0.0)).train()
    with torch.no_grad():
        assert not torch.allclose(noisy(x), noisy(x))
        assert torch.allclose(plain(x), plain(x))
        noisy.eval()
        assert torch.allclose(noisy(x), noisy(x))


def test_architecture_ignores_dropout_but_not_shape():
    a = architecture(ModelKwargs(embedding_dim=64, dropout_rate=0.1))
    assert a == architecture(ModelKwargs(embedding_dim=64, dropout_rate=0.5))
    assert a != architecture(ModelKwargs(embedding_dim=32))
    assert a != architecture(ModelKwargs(embedding_dim=64, use_cbam=False))


def test_imagenet_weights_are_not_found_in_an_empty_cache_without_download(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert imagenet_cache_path().is_relative_to(tmp_path)
    assert load_imagenet_state(allow_download=False) is None


def test_imagenet_weights_are_read_from_torchvisions_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    reference = resnet18(weights=None).state_dict()
    imagenet_cache_path().parent.mkdir(parents=True)
    torch.save(reference, imagenet_cache_path())
    state = load_imagenet_state(allow_download=False)
    assert state is not None and torch.equal(state["layer3.1.conv2.weight"], reference["layer3.1.conv2.weight"])


def test_apply_imagenet_copies_the_backbone_and_leaves_stem_cbam_and_head():
    reference = resnet18(weights=None).state_dict()
    model = ReIDNet(embedding_dim=8)
    random_init = model.layer2[0].conv1.weight.clone()
    left = apply_imagenet(model, reference)
    assert torch.equal(model.layer2[0].conv1.weight, reference["layer2.0.conv1.weight"])
    assert not torch.equal(model.layer2[0].conv1.weight, random_init)
    assert "conv1.weight" in left and "embedding.weight" in left
    assert any(k.startswith("cbam2.") for k in left)
    assert not any(k.startswith("layer") for k in left)


def test_unknown_attention_layer_is_rejected():
    with pytest.raises(ValueError, match="layer5"):
        ReIDNet(attention_layers=["layer5"])


def test_bnneck_adds_a_batchnorm_neck_to_the_model_and_its_architecture():
    plain, neck = (build_model(ModelKwargs(embedding_dim=8, bnneck=b)) for b in (False, True))
    assert isinstance(plain.neck, nn.Identity) and isinstance(neck.neck, nn.BatchNorm1d)
    assert "neck.running_mean" in neck.state_dict() and "neck.running_mean" not in plain.state_dict()
    assert "bnneck" not in architecture(ModelKwargs(bnneck=False))  # models saved before the option still load
    assert architecture(ModelKwargs(bnneck=True))["bnneck"] is True
    neck.eval()
    neck.neck.running_mean.fill_(0.5)
    x = crops()
    with torch.no_grad():
        out = neck(x)
        before = torch.nn.functional.normalize(neck.embedding(neck.features(x)), dim=1)
    assert torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)
    assert not torch.allclose(out, before, atol=1e-3)


def test_bnneck_model_compiles_to_torchscript():
    model = build_model(ModelKwargs(embedding_dim=8, bnneck=True)).eval()
    scripted = torch.jit.script(model)
    x = crops()
    assert torch.allclose(scripted(x), model(x), atol=1e-5)

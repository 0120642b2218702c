"""laxai_trainer.reid.models.init_weights: force_pretraining, warm start from the tenant's latest model."""

import io

import pytest
import torch
from torchvision.models import resnet18

from laxai_trainer.config import ModelKwargs
from laxai_trainer.errors import ConfigError
from laxai_trainer.reid.models.init_weights import initialise, previous_models
from laxai_trainer.reid.models.model import architecture, build_model, imagenet_cache_path
from laxai_trainer.run_layout import RunLayout, write_json
from laxai_trainer.storage import open_storage

KW = ModelKwargs(embedding_dim=8, attention_layers=["layer4"])


@pytest.fixture
def storage(tmp_path):
    return open_storage(tmp_path / "root")


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


@pytest.fixture
def cached_imagenet(tmp_path, monkeypatch):
    """A stand-in for torchvision's cached ImageNet file (same keys and shapes)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    state = resnet18(weights=None).state_dict()
    imagenet_cache_path().parent.mkdir(parents=True)
    torch.save(state, imagenet_cache_path())
    return state


def finished_run(storage, run, kwargs, completed_at, fill):
    model = build_model(kwargs)
    for p in model.parameters():
        p.data.fill_(fill)
    layout = RunLayout("t1", run)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    storage.write_bytes(layout.final_model, buf.getvalue())
    write_json(storage, layout.final_meta, {"architecture": architecture(kwargs), "completed_at": completed_at})


def test_force_pretraining_without_weights_is_a_clear_config_error(storage, empty_torch_home):
    with pytest.raises(ConfigError, match="force_pretraining is true") as err:
        initialise(build_model(KW), KW, True, storage, "t1", allow_download=False)
    assert str(imagenet_cache_path()) in str(err.value)


def test_force_pretraining_uses_cached_imagenet_even_with_a_previous_model(storage, cached_imagenet):
    finished_run(storage, "old", KW, "2026-01-01T00:00:00Z", 0.5)
    model = build_model(KW)
    source = initialise(model, KW, True, storage, "t1", allow_download=False)
    assert source.kind == "imagenet"
    assert torch.equal(model.layer1[0].conv1.weight, cached_imagenet["layer1.0.conv1.weight"])


def test_no_previous_model_and_no_imagenet_is_random(storage, empty_torch_home):
    source = initialise(build_model(KW), KW, False, storage, "t1", allow_download=False)
    assert source.kind == "random" and "no previous model" in source.describe()


def test_no_previous_model_falls_back_to_cached_imagenet(storage, cached_imagenet):
    assert initialise(build_model(KW), KW, False, storage, "t1", allow_download=False).kind == "imagenet"


def test_warm_start_takes_the_newest_compatible_final_model(storage, empty_torch_home):
    finished_run(storage, "older", KW, "2026-01-01T00:00:00Z", 0.25)
    finished_run(storage, "newer", KW, "2026-02-01T00:00:00Z", 0.5)
    incompatible = ModelKwargs(embedding_dim=16)
    finished_run(storage, "newest-other-arch", incompatible, "2026-03-01T00:00:00Z", 0.75)
    assert [r for r, _ in previous_models(storage, "t1")] == ["newest-other-arch", "newer", "older"]
    model = build_model(KW)
    source = initialise(model, KW, False, storage, "t1", allow_download=False)
    assert source.kind == "warm_start" and source.detail == "run newer"
    assert source.uri.endswith("t1/runs/newer/final/model.pt")
    assert torch.all(model.embedding.weight == 0.5)


def test_dropout_rate_does_not_block_a_warm_start(storage, empty_torch_home):
    finished_run(storage, "prev", KW, "2026-01-01T00:00:00Z", 0.5)
    other_dropout = ModelKwargs(embedding_dim=8, attention_layers=["layer4"], dropout_rate=0.5)
    source = initialise(build_model(other_dropout), other_dropout, False, storage, "t1", allow_download=False)
    assert source.kind == "warm_start"


def test_other_tenants_models_are_never_used(storage, empty_torch_home):
    finished_run(storage, "prev", KW, "2026-01-01T00:00:00Z", 0.5)
    assert initialise(build_model(KW), KW, False, storage, "t2", allow_download=False).kind == "random"


def test_a_damaged_model_is_skipped(storage, empty_torch_home):
    finished_run(storage, "prev", KW, "2026-01-01T00:00:00Z", 0.5)
    storage.write_bytes(RunLayout("t1", "prev").final_model, b"not a checkpoint")
    assert initialise(build_model(KW), KW, False, storage, "t1", allow_download=False).kind == "random"

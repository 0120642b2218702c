"""laxai_trainer.reid.models.export: final model files and model.json."""

import torch

from laxai_trainer.config import ModelKwargs
from laxai_trainer.reid.data.loaders import IMAGENET_MEAN, INPUT_SIZE
from laxai_trainer.reid.models.export import export_model, model_card
from laxai_trainer.reid.models.model import architecture, build_model


def test_export_writes_a_state_dict_and_a_torchscript_that_embed_alike(tmp_path):
    kwargs = ModelKwargs(embedding_dim=8)
    model = build_model(kwargs).eval()
    exported = export_model(model, tmp_path / "final")
    assert exported.torchscript_error is None
    loaded = build_model(kwargs).eval()
    loaded.load_state_dict(torch.load(exported.state_dict, weights_only=True))
    images = torch.randn(2, 3, *INPUT_SIZE)
    scripted = torch.jit.load(str(exported.torchscript))
    with torch.no_grad():
        assert torch.allclose(loaded(images), model(images)) and torch.allclose(scripted(images), model(images))


def test_a_failed_torchscript_export_keeps_the_state_dict(tmp_path):
    class Unscriptable(torch.nn.Module):
        def forward(self, x):
            return {**{"x": x}}  # dict unpacking: TorchScript cannot compile it

    exported = export_model(Unscriptable(), tmp_path)
    assert exported.state_dict.is_file() and exported.torchscript is None and exported.torchscript_error


def test_model_card_says_how_to_rebuild_and_feed_the_model():
    kwargs = ModelKwargs(embedding_dim=8)
    card = model_card(kwargs, "r1", 0, None, "2026-12-01T00:00:00Z")
    assert card["architecture"] == architecture(kwargs) and card["model_kwargs"]["embedding_dim"] == 8
    assert card["input_size"] == list(INPUT_SIZE) and card["normalization"]["mean"] == IMAGENET_MEAN
    assert card["best_epoch"] is None and card["run_name"] == "r1"

"""laxai_trainer.config: defaults, bounds and unknown keys of the training request."""

import pytest
from pydantic import ValidationError

from laxai_trainer.config import ModelKwargs, TrainingConfig, TrainingKwargs
from tests.contract_cases import (
    BAD_VALUES,
    FULL_REQUEST,
    SEED_REQUEST,
    UNKNOWN_KEYS,
    with_unknown,
    with_value,
)


def test_seed_example_request_is_accepted():
    config = TrainingConfig.model_validate(SEED_REQUEST)
    assert config.training_kwargs.num_epochs == 10
    assert config.training_kwargs.batch_size == 32
    assert config.model_kwargs.embedding_dim == 256
    assert config.custom_name == "api_test_run"


def test_full_documented_request_round_trips():
    config = TrainingConfig.model_validate(FULL_REQUEST)
    dumped = config.model_dump(mode="json")
    for section in ("training_kwargs", "model_kwargs"):
        for key, value in FULL_REQUEST[section].items():
            assert dumped[section][key] == value, key
    assert dumped["wandb_tags"] == ["tag1", "tag2"]
    assert dumped["frames"] == 20


def test_defaults_are_the_documented_ones():
    config = TrainingConfig(tenant_id="t")
    assert config.training_kwargs.model_dump() == {
        "num_epochs": 50,
        "batch_size": 64,
        "learning_rate": 1e-3,
        "early_stopping_patience": 10,
        "min_images_per_player": 2,
        "margin": 0.4,
        "weight_decay": 1e-4,
        "margin_decay_rate": 0.99,
        "margin_change_threshold": 0.01,
        "lr_scheduler_patience": 3,
        "lr_scheduler_factor": 0.5,
        "lr_scheduler_min_lr": 1e-7,
        "num_workers": 8,
        "prefetch_factor": 2,
        "force_pretraining": False,
        "images_per_player": 4,
        "triplet_mining": "batch_hard",
        "seed": 42,
        "input_pipeline": "pil",
        "triplet_loss": "hard_margin",
        "id_loss_weight": 0.0,
        "label_smoothing": 0.1,
        "warmup_epochs": 0,
    }
    assert config.model_kwargs.model_dump() == {
        "embedding_dim": 512,
        "dropout_rate": 0.2,
        "use_cbam": True,
        "bnneck": False,
        "attention_layers": ["layer2", "layer3", "layer4"],
    }
    assert config.frames is None and config.custom_name is None
    assert config.wandb_tags == []


def test_seed_documents_all_fifteen_training_and_four_model_parameters():
    seed_training = set(FULL_REQUEST["training_kwargs"])
    assert len(seed_training) == 15 and seed_training <= set(TrainingKwargs.model_fields)
    extensions = {"bnneck"}  # beyond the seed's four (docs/architecture.md, "Recipe")
    assert set(FULL_REQUEST["model_kwargs"]) == set(ModelKwargs.model_fields) - extensions


def test_tenant_is_required():
    with pytest.raises(ValidationError) as err:
        TrainingConfig.model_validate({})
    assert err.value.errors()[0]["loc"] == ("tenant_id",)


@pytest.mark.parametrize(("path", "value"), BAD_VALUES)
def test_bad_value_is_rejected_naming_the_field(path, value):
    with pytest.raises(ValidationError) as err:
        TrainingConfig.model_validate(with_value(FULL_REQUEST, path, value))
    leaf = path.split(".")[-1]
    errors = err.value.errors()
    assert any(leaf in e["loc"] or leaf in e["msg"] for e in errors), [e["loc"] for e in errors]


@pytest.mark.parametrize(("parent", "key"), UNKNOWN_KEYS)
def test_unknown_key_is_rejected_naming_it(parent, key):
    with pytest.raises(ValidationError) as err:
        TrainingConfig.model_validate(with_unknown(SEED_REQUEST, parent, key))
    (error,) = err.value.errors()
    assert error["type"] == "extra_forbidden"
    assert error["loc"][-1] == key


def test_batch_must_hold_two_players():
    with pytest.raises(ValidationError, match="batch_size"):
        TrainingKwargs(batch_size=8, images_per_player=8)
    assert TrainingKwargs(batch_size=16, images_per_player=8).batch_size == 16


def test_attention_layers_must_not_repeat():
    with pytest.raises(ValidationError, match="attention_layers"):
        ModelKwargs(attention_layers=["layer2", "layer2"])


def test_run_name_falls_back_to_task_id():
    assert TrainingConfig(tenant_id="t").run_name("task-1") == "task-1"
    assert TrainingConfig(tenant_id="t", custom_name="mine").run_name("task-1") == "mine"

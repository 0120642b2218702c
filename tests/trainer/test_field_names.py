from __future__ import annotations

from laxai_api.schemas import TrainRequest
from laxai_trainer.config import TrainingConfig
from laxai_trainer.field_names import did_you_mean


def test_closest_key_at_its_place():
    assert did_you_mean(TrainingConfig, ["training_kwargs", "num_epoch"]) == "num_epochs"
    assert did_you_mean(TrainingConfig, ["model_kwargs", "embeding_dim"]) == "embedding_dim"
    assert did_you_mean(TrainRequest, ["training_params", "learning_rte"]) == "learning_rate"  # an alias
    assert did_you_mean(TrainingConfig, ["tenant"]) == "tenant_id"


def test_nothing_close_or_no_such_place():
    assert did_you_mean(TrainingConfig, ["training_kwargs", "colour"]) is None
    assert did_you_mean(TrainingConfig, ["nowhere", "num_epoch"]) is None

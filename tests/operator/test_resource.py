"""laxai_operator.resource: the TrainingJob spec and status models."""

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from laxai_operator.resource import (
    TERMINAL_PHASES,
    Phase,
    TrainingJobSpec,
    TrainingJobStatus,
)
from laxai_trainer.config import TrainingConfig
from tests.contract_cases import SEED_REQUEST

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("name", ["trainingjob.yaml", "trainingjob-cpu.yaml"])
def test_examples_parse(name):
    spec = TrainingJobSpec.model_validate(yaml.safe_load((EXAMPLES / name).read_text())["spec"])
    assert spec.tenant_id == "tenant1"


def test_cpu_example_runs_without_gpus():
    spec = TrainingJobSpec.model_validate(yaml.safe_load((EXAMPLES / "trainingjob-cpu.yaml").read_text())["spec"])
    assert spec.gpus == 0
    assert spec.startup_timeout_seconds == 600


def test_run_fields_use_kubernetes_names_on_the_wire():
    spec = TrainingJobSpec.model_validate(
        {**SEED_REQUEST, "nodeSelector": {"pool": "gpu"}, "backoffLimit": 5, "shmSize": "8Gi",
         "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]}
    )
    assert spec.node_selector == {"pool": "gpu"} and spec.backoff_limit == 5 and spec.shm_size == "8Gi"
    wire = spec.model_dump(by_alias=True, exclude_none=True)
    assert wire["nodeSelector"] == {"pool": "gpu"} and wire["backoffLimit"] == 5
    assert wire["training_kwargs"]["num_epochs"] == 10


def test_defaults_of_run_fields():
    spec = TrainingJobSpec.model_validate(SEED_REQUEST)
    assert (spec.gpus, spec.backoff_limit, spec.suspend, spec.cancel) == (1, 3, False, False)
    assert spec.startup_timeout_seconds == 900 and spec.image is None


@pytest.mark.parametrize("key", ["gpu", "node_selector_typo", "backofflimit"])
def test_unknown_run_keys_are_rejected(key):
    with pytest.raises(ValidationError) as err:
        TrainingJobSpec.model_validate({**SEED_REQUEST, key: 1})
    assert err.value.errors()[0]["loc"] == (key,)


def test_training_config_is_the_trainers_part_of_the_spec():
    spec = TrainingJobSpec.model_validate({**SEED_REQUEST, "gpus": 0})
    config = spec.training_config()
    assert isinstance(config, TrainingConfig)
    assert config == TrainingConfig.model_validate(SEED_REQUEST)


def test_status_serialises_with_kubernetes_names():
    status = TrainingJobStatus(observed_generation=2, start_time="2026-01-01T00:00:00Z")
    wire = status.model_dump(exclude_none=True, mode="json")
    assert wire["observedGeneration"] == 2 and wire["startTime"] == "2026-01-01T00:00:00Z"
    assert wire["phase"] == "pending" and wire["progress"]["status"] == "pending"


def test_terminal_phases():
    assert {p for p in Phase if p.terminal} == TERMINAL_PHASES == {Phase.completed, Phase.failed, Phase.cancelled}

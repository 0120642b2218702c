"""laxai_trainer.job_config: TrainingJob, spec and seed request; errors name the field."""

import json
from pathlib import Path

import pytest
import yaml

from laxai_operator.resource import RunSpec
from laxai_trainer.job_config import RUN_ONLY_KEYS, ConfigDocumentError, load_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_run_only_keys_are_exactly_the_run_spec_fields():
    wire_names = {field.alias or name for name, field in RunSpec.model_fields.items()}
    assert wire_names == RUN_ONLY_KEYS


def test_seed_request_json():
    config = load_config((EXAMPLES / "seed_request.json").read_text())
    assert config.custom_name == "api_test_run" and config.model_kwargs.embedding_dim == 256


@pytest.mark.parametrize("name", ["trainingjob.yaml", "trainingjob-cpu.yaml"])
def test_trainingjob_yaml_drops_run_only_keys(name):
    doc = yaml.safe_load((EXAMPLES / name).read_text())
    config = load_config((EXAMPLES / name).read_text())
    assert config.tenant_id == doc["spec"]["tenant_id"]
    assert config.training_kwargs.num_epochs == doc["spec"]["training_kwargs"]["num_epochs"]


def test_a_bare_spec_with_run_keys():
    spec = {"tenant_id": "t", "gpus": 0, "shmSize": "1Gi", "image": "x", "training_kwargs": {"num_epochs": 2}}
    assert load_config(json.dumps(spec)).training_kwargs.num_epochs == 2


def test_unknown_key_is_named():
    with pytest.raises(ConfigDocumentError, match=r"training_kwargs\.marign: Extra inputs are not permitted"):
        load_config(json.dumps({"tenant_id": "t", "training_kwargs": {"marign": 0.3}}), "cfg.json")


def test_bad_value_is_named_with_the_source():
    with pytest.raises(ConfigDocumentError, match=r"in job\.yaml:\n  model_kwargs\.embedding_dim"):
        load_config("tenant_id: t\nmodel_kwargs: {embedding_dim: 2}\n", "job.yaml")


def test_missing_tenant_is_named():
    with pytest.raises(ConfigDocumentError, match="tenant_id: Field required"):
        load_config("{}")


@pytest.mark.parametrize("text", ["[1, 2]", "a: [", "just text"])
def test_not_a_mapping_or_not_yaml(text):
    with pytest.raises(ConfigDocumentError):
        load_config(text)


def test_other_kinds_are_rejected():
    with pytest.raises(ConfigDocumentError, match="kind is 'Job'"):
        load_config(yaml.safe_dump({"apiVersion": "batch/v1", "kind": "Job", "spec": {}}))

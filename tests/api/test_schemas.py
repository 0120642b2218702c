"""The request body: the seed's body as-is, aliases, unknown keys, run fields."""

import pytest
from pydantic import ValidationError

from laxai_api.schemas import SEED_EXAMPLE, JobList, TrainRequest
from tests.contract_cases import FULL_REQUEST, SEED_REQUEST


def test_the_seed_curl_body_is_accepted_as_is():
    assert SEED_EXAMPLE == SEED_REQUEST  # the OpenAPI example is the documented curl body
    request = TrainRequest.model_validate(SEED_REQUEST)
    assert request.training_kwargs.num_epochs == 10 and request.model_kwargs.embedding_dim == 256
    assert request.spec_document() == SEED_REQUEST  # only what was sent goes on the wire


def test_the_full_documented_request_is_accepted():
    assert TrainRequest.model_validate(FULL_REQUEST).spec().frames == 20


def test_earlier_server_aliases():
    request = TrainRequest.model_validate(
        {"tenant_id": "t1", "training_params": {"num_epochs": 7}, "model_params": {"embedding_dim": 64}}
    )
    assert request.training_kwargs.num_epochs == 7 and request.model_kwargs.embedding_dim == 64
    document = request.spec_document()
    assert "training_params" not in document and document["training_kwargs"] == {"num_epochs": 7}


def test_alias_and_name_together_is_an_error():
    with pytest.raises(ValidationError, match="training_kwargs or its alias training_params"):
        TrainRequest.model_validate({"tenant_id": "t1", "training_params": {}, "training_kwargs": {}})


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"tenant_id": "t1", "training_kwargs": {"num_epoch": 3}}, ("training_kwargs", "num_epoch")),
        ({"tenant_id": "t1", "training_params": {"lerning_rate": 0.1}}, ("training_kwargs", "lerning_rate")),
        ({"tenant_id": "t1", "model_kwargs": {"embeding_dim": 3}}, ("model_kwargs", "embeding_dim")),
        ({"tenant_id": "t1", "epochs": 3}, ("epochs",)),
    ],
)
def test_a_typo_is_an_error_naming_the_key(body, loc):
    with pytest.raises(ValidationError) as info:
        TrainRequest.model_validate(body)
    assert [e["loc"] for e in info.value.errors()] == [loc]
    assert info.value.errors()[0]["type"] == "extra_forbidden"


def test_run_fields_of_a_trainingjob_spec_are_accepted():
    request = TrainRequest.model_validate({"tenant_id": "t1", "gpus": 0, "resources": {"cpu": "2"}})
    assert request.spec_document() == {"tenant_id": "t1", "gpus": 0, "resources": {"cpu": "2"}}
    assert request.spec().training_config().tenant_id == "t1"


def test_submitting_a_cancelled_job_is_refused():
    with pytest.raises(ValidationError, match="cancel must be false"):
        TrainRequest.model_validate({"tenant_id": "t1", "cancel": True})


def test_job_list_serialises_continue():
    assert JobList(total_jobs=0, jobs=[], continue_="abc").model_dump() == {
        "total_jobs": 0, "jobs": [], "continue": "abc"
    }

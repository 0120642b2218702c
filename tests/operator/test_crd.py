"""laxai_operator.crd: the committed CRD is generated, structural, and enforces the contract.

Sample CRs are validated against the generated openAPIV3Schema with a real JSON-schema
validator (Draft 4: OpenAPI 3.0's boolean exclusiveMinimum), and the CEL rules are
evaluated with a real CEL interpreter (cel-python), as the API server would.
"""

import copy
import subprocess
import sys
from pathlib import Path

import celpy
import jsonschema
import pytest
import yaml

from laxai_operator.cli import main as operator_main
from laxai_operator.crd import build_crd, render_crd
from tests.contract_cases import (
    BAD_VALUES,
    FULL_REQUEST,
    SEED_REQUEST,
    UNKNOWN_KEYS,
    with_unknown,
    with_value,
)

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "trainingjob.yaml"


def _schema():
    return build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _strict(node, name=None):
    """Close every object with properties, as the API server's strict field validation
    (kubectl's default) reports unknown fields instead of pruning them (metadata aside)."""
    node = copy.deepcopy(node)
    if isinstance(node, dict):
        node = {k: (_strict(v, k) if k != "properties" else {p: _strict(c, p) for p, c in v.items()})
                for k, v in node.items()}
        if "properties" in node and name != "metadata":
            node["additionalProperties"] = False
    elif isinstance(node, list):
        node = [_strict(v) for v in node]
    return node


VALIDATOR = jsonschema.Draft4Validator(_strict(_schema()))


def _cr(spec):
    return {"apiVersion": "training.laxai.io/v1alpha1", "kind": "TrainingJob",
            "metadata": {"name": "x"}, "spec": spec}


def test_committed_crd_is_what_the_command_prints(capsys):
    assert operator_main(["crd"]) == 0
    printed = capsys.readouterr().out
    assert printed == render_crd()
    assert CRD_FILE.read_text() == printed, "crds/trainingjob.yaml is stale: run `laxai-operator crd > crds/trainingjob.yaml`"


def test_crd_command_runs_as_console_script():
    out = subprocess.run([sys.executable, "-m", "laxai_operator.cli", "crd"], capture_output=True, text=True, check=True)
    assert yaml.safe_load(out.stdout)["kind"] == "CustomResourceDefinition"


def _walk(node, path="$"):
    yield path, node
    for key, child in node.get("properties", {}).items():
        yield from _walk(child, f"{path}.{key}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


def test_schema_is_structural_and_described():
    for path, node in _walk(_schema()):
        assert "type" in node, f"{path} has no type"
        assert not ("properties" in node and "additionalProperties" in node), path
        for forbidden in ("$ref", "anyOf", "allOf", "oneOf", "not", "uniqueItems", "title"):
            assert forbidden not in node, f"{path} has {forbidden}"
        if "default" in node:
            assert node["default"] is not None, path
    for path, node in _walk(_schema()["properties"]["spec"]):
        if not path.endswith("[]") and not path.endswith("{}"):
            assert node.get("description"), f"{path} has no description"


def test_crd_metadata():
    crd = build_crd()
    names = crd["spec"]["names"]
    assert (crd["spec"]["group"], names["kind"], names["plural"]) == ("training.laxai.io", "TrainingJob", "trainingjobs")
    assert names["shortNames"] == ["tj"] and "laxai" in names["categories"]
    version = crd["spec"]["versions"][0]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Tenant"] == ".spec.tenant_id"
    assert columns["Status"] == ".status.phase"
    assert columns["Epoch"] == ".status.progress.current_epoch"
    assert columns["Loss"] == ".status.progress.current_loss"
    assert columns["Age"] == ".metadata.creationTimestamp"


def test_defaults_and_bounds_come_from_the_models():
    spec = _schema()["properties"]["spec"]["properties"]
    margin = spec["training_kwargs"]["properties"]["margin"]
    assert margin["default"] == 0.4 and margin["minimum"] == 0 and margin["exclusiveMinimum"] is True
    assert margin["description"] == "Triplet loss margin."
    assert spec["training_kwargs"]["default"] == {}
    assert spec["gpus"]["default"] == 1 and spec["gpus"]["minimum"] == 0
    layers = spec["model_kwargs"]["properties"]["attention_layers"]
    assert layers["x-kubernetes-list-type"] == "set"
    assert layers["default"] == ["layer2", "layer3", "layer4"]
    assert spec["tenant_id"]["pattern"]
    assert _schema()["properties"]["spec"]["required"] == ["tenant_id"]


@pytest.mark.parametrize("example", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_examples_are_valid_trainingjobs(example):
    VALIDATOR.validate(yaml.safe_load(example.read_text()))


def test_seed_requests_are_valid_specs():
    VALIDATOR.validate(_cr(SEED_REQUEST))
    VALIDATOR.validate(_cr(FULL_REQUEST))


@pytest.mark.parametrize(("path", "value"), BAD_VALUES)
def test_bad_value_is_rejected_by_the_crd_schema(path, value):
    errors = list(VALIDATOR.iter_errors(_cr(with_value(FULL_REQUEST, path, value))))
    assert errors, f"{path}={value!r} accepted"
    leaf = path.split(".")[-1]
    assert any(leaf in e.absolute_path for e in errors), [list(e.absolute_path) for e in errors]


@pytest.mark.parametrize(("parent", "key"), UNKNOWN_KEYS)
def test_unknown_key_is_rejected_by_the_crd_schema(parent, key):
    errors = list(VALIDATOR.iter_errors(_cr(with_unknown(SEED_REQUEST, parent, key))))
    assert errors and any(key in e.message for e in errors)


def test_run_fields_are_bounded():
    assert list(VALIDATOR.iter_errors(_cr({**SEED_REQUEST, "gpus": -1})))
    assert list(VALIDATOR.iter_errors(_cr({**SEED_REQUEST, "resources": {"memory": "lots"}})))
    assert list(VALIDATOR.iter_errors(_cr({**SEED_REQUEST, "tolerations": [{"effect": "Sometimes"}]})))
    VALIDATOR.validate(_cr({**SEED_REQUEST, "gpus": 0, "resources": {"memory": "16Gi", "cpu": "3500m"}}))


# ---- CEL rules, evaluated as the API server does on update (self = new, oldSelf = old) ----

def _spec_rules():
    spec = _schema()["properties"]["spec"]
    return spec["x-kubernetes-validations"], spec


def _evaluate(rule, new, old=None):
    env = celpy.Environment()
    program = env.program(env.compile(rule))
    activation = {"self": celpy.json_to_cel(new)}
    if old is not None:
        activation["oldSelf"] = celpy.json_to_cel(old)
    return bool(program.evaluate(activation))


def _violations(old_spec, new_spec):
    """Messages of every CEL rule the update old_spec -> new_spec breaks."""
    rules, spec = _spec_rules()
    broken = [r["message"] for r in rules if not _evaluate(r["rule"], new_spec, old_spec)]
    for name, prop in spec["properties"].items():
        if name in old_spec and name in new_spec:
            for rule in prop.get("x-kubernetes-validations", []):
                uses_old = "oldSelf" in rule["rule"]
                if not _evaluate(rule["rule"], new_spec[name], old_spec[name] if uses_old else None):
                    broken.append(rule["message"])
    return broken


BASE = {**SEED_REQUEST, "gpus": 1, "cancel": False, "suspend": False,
        "training_kwargs": {**SEED_REQUEST["training_kwargs"], "images_per_player": 4}}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tenant_id": "other"}, "tenant_id is immutable after creation"),
        ({"gpus": 2}, "gpus is immutable after creation"),
        ({"training_kwargs": {**BASE["training_kwargs"], "margin": 0.3}}, "training_kwargs is immutable after creation"),
        ({"model_kwargs": {"embedding_dim": 128}}, "model_kwargs is immutable after creation"),
        ({"frames": 3}, "frames is immutable after creation"),
        ({"image": "other:tag"}, "image is immutable after creation"),
    ],
)
def test_immutable_fields_are_guarded_by_cel(change, message):
    assert message in _violations(BASE, {**BASE, **change})


def test_mutable_fields_may_change():
    assert _violations(BASE, {**BASE, "cancel": True, "suspend": True, "ttlSecondsAfterFinished": 60}) == []


def test_cancel_cannot_be_undone():
    assert "cancel cannot be undone: a cancelled TrainingJob stays cancelled" in _violations(
        {**BASE, "cancel": True}, {**BASE, "cancel": False}
    )


def test_batch_must_hold_two_players_in_cel():
    (rule,) = [r for r in _spec_rules()[1]["properties"]["training_kwargs"]["x-kubernetes-validations"]
               if "oldSelf" not in r["rule"]]
    assert _evaluate(rule["rule"], {"batch_size": 8, "images_per_player": 4})
    assert not _evaluate(rule["rule"], {"batch_size": 8, "images_per_player": 8})


@pytest.mark.parametrize("terminal", ["completed", "failed", "cancelled"])
def test_a_terminal_phase_is_final_for_every_writer(kube_emulator, terminal):
    """The CRD's status transition rule: no writer (a stale operator, the trainer) regresses it."""
    from tests.support.api_errors import ApiError

    emu = kube_emulator
    tjs = "training.laxai.io/v1alpha1/trainingjobs"
    emu.create(tjs, {"metadata": {"name": "run-1", "namespace": "default"}, "spec": {"tenant_id": "t"}})
    emu.patch_status(tjs, "default", "run-1", {"phase": "running"})  # non-terminal: may change
    emu.patch_status(tjs, "default", "run-1", {"phase": terminal, "reason": "X"})
    emu.patch_status(tjs, "default", "run-1", {"reason": "Y", "metrics": {"mAP": 0.5}})  # phase kept: fine
    for other in ("pending", "running", *({"completed", "failed", "cancelled"} - {terminal})):
        with pytest.raises(ApiError) as err:
            emu.patch_status(tjs, "default", "run-1", {"phase": other})
        assert err.value.code == 422 and "a terminal phase (completed, failed, cancelled) is final" in str(
            err.value.status())
    assert emu.get(tjs, "default", "run-1")["status"]["phase"] == terminal


@pytest.mark.parametrize(("kwargs", "holds"), [
    ({}, True),  # the CRD's own default: the API server evaluates the rule on it at CRD creation
    ({"batch_size": 8}, True),  # images_per_player absent: its default (4) counts
    ({"batch_size": 6}, False),
    ({"images_per_player": 40}, False),  # batch_size absent: its default (64) counts
    ({"batch_size": 8, "images_per_player": 8}, False),
    ({"batch_size": 16, "images_per_player": 8}, True),
])
def test_batch_rule_is_safe_on_defaults_and_absent_fields(kwargs, holds):
    (rule,) = [r for r in _spec_rules()[1]["properties"]["training_kwargs"]["x-kubernetes-validations"]
               if "oldSelf" not in r["rule"]]
    assert _evaluate(rule["rule"], kwargs) is holds


def test_generated_crd_passes_the_api_servers_crd_checks():
    from tests.support.crd_admission import check

    assert check(build_crd()) == []
    assert _schema()["properties"]["metadata"] == {"type": "object"}  # nothing else is allowed there


def test_printer_columns_read_at_a_glance():
    """kubectl prints a number column's stored float as is (Go's %v: the shortest round trip,
    which is Python's repr): the status must hold readable numbers (issue 10: LOSS printed
    0.5082808136940002)."""
    from laxai_operator.resource import TrainingJobStatus

    status = TrainingJobStatus.model_validate({
        "phase": "running", "progress": {"current_epoch": 3, "total_epochs": 50, "current_loss": 0.5082808136940002},
        "metrics": {"mAP": 0.73456789012}}).model_dump(mode="json", exclude_none=True)
    obj = {"spec": {"tenant_id": "t1"}, "status": status, "metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"}}
    cells = {}
    for column in build_crd()["spec"]["versions"][0]["additionalPrinterColumns"]:
        value = obj
        for key in column["jsonPath"].lstrip(".").split("."):
            value = value.get(key) if isinstance(value, dict) else None
        cells[column["name"]] = repr(value) if column["type"] == "number" else value
    assert (cells["Loss"], cells["mAP"]) == ("0.5083", "0.7346")

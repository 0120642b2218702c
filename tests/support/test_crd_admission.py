"""CRD admission (tests/support/crd_admission.py, cel_cost.py): the emulator refuses a
CustomResourceDefinition the way a real kube-apiserver refuses it, in the same words."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.support import cel_cost
from tests.support.api_errors import ApiError
from tests.support.crd_admission import check, check_schema, refusal
from tests.support.kinds import REPO_ROOT, TRAININGJOB_CRD, load_crds
from tests.support.kube_emulator import KubeEmulator

BASE = "spec.validation.openAPIV3Schema"

# The two fragments of the old crds/trainingjob.yaml that a real v1.32 API server refused,
# with its verbatim messages (issue 10, /work/shared/REAL_K8S_FACTS.md).
OLD_METADATA = {"type": "object", "description": "Standard object metadata."}
OLD_TRAINING_KWARGS = {
    "type": "object", "description": "Training hyperparameters.", "default": {},
    "properties": {"batch_size": {"type": "integer", "default": 64, "minimum": 4},
                   "images_per_player": {"type": "integer", "default": 4, "minimum": 2}},
    "x-kubernetes-validations": [
        {"rule": "self == oldSelf", "message": "training_kwargs is immutable after creation"},
        {"rule": "self.batch_size >= 2 * self.images_per_player",
         "message": "batch_size must be at least 2 x images_per_player: a batch needs two players"}],
}
REAL_METADATA_ERROR = (
    "spec.validation.openAPIV3Schema.properties[metadata]: Forbidden: must not specify anything other than "
    "name and generateName, but metadata is implicitly specified")
REAL_DEFAULT_ERROR = (
    'spec.validation.openAPIV3Schema.properties[spec].properties[training_kwargs].default: Invalid value: '
    '"object": no such key: batch_size evaluating rule: batch_size must be at least 2 x images_per_player: '
    'a batch needs two players')


def project_crd() -> dict[str, Any]:
    return load_crds([TRAININGJOB_CRD])[0]


def root_of(crd: dict[str, Any]) -> dict[str, Any]:
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def crd_with(spec_props: dict[str, Any], **root: Any) -> dict[str, Any]:
    """A minimal CRD whose spec has the given properties."""
    schema = {"type": "object", "properties": {"spec": {"type": "object", "properties": spec_props}}, **root}
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "things.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                     "names": {"kind": "Thing", "plural": "things"},
                     "versions": [{"name": "v1", "served": True, "storage": True,
                                   "schema": {"openAPIV3Schema": schema}}]}}


def texts(crd: dict[str, Any]) -> list[str]:
    return [f"{c.field}: {c.message}" for c in check(crd)]


@pytest.mark.parametrize("path", [TRAININGJOB_CRD, REPO_ROOT / "helm/laxai-training/crds/trainingjob.yaml"],
                         ids=["crds", "chart"])
def test_the_project_crd_is_accepted(path):
    (crd,) = load_crds([path])
    assert check(crd) == []


def test_old_metadata_node_is_refused_in_the_real_servers_words():
    crd = project_crd()
    root_of(crd)["properties"]["metadata"] = OLD_METADATA
    assert texts(crd) == [REAL_METADATA_ERROR]
    assert refusal(crd) == ('CustomResourceDefinition.apiextensions.k8s.io "trainingjobs.training.laxai.io" '
                            f"is invalid: {REAL_METADATA_ERROR}")


def test_metadata_may_restrict_name_and_generate_name_only():
    ok = crd_with({}, )
    root_of(ok)["properties"]["metadata"] = {"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 40}, "generateName": {"type": "string"}}}
    assert check(ok) == []
    labels = copy.deepcopy(ok)
    root_of(labels)["properties"]["metadata"]["properties"]["labels"] = {"type": "object"}
    assert texts(labels) == [f"{BASE}.properties[metadata]: Forbidden: must not specify anything other than name "
                             "and generateName, but metadata is implicitly specified"]


def test_old_cross_field_rule_fails_on_its_default_in_the_real_servers_words():
    crd = project_crd()
    root_of(crd)["properties"]["spec"]["properties"]["training_kwargs"] = copy.deepcopy(OLD_TRAINING_KWARGS)
    assert texts(crd) == [REAL_DEFAULT_ERROR]


def test_rules_run_on_defaults_with_and_without_old_self():
    transition = crd_with({"n": {"type": "integer", "default": 1, "x-kubernetes-validations": [
        {"rule": "self == oldSelf", "message": "n is immutable"}, {"rule": "self > 1", "message": "n > 1"}]}})
    assert texts(transition) == [f'{BASE}.properties[spec].properties[n].default: Invalid value: "integer": n > 1']
    nested = crd_with({"o": {"type": "object", "default": {"a": ""}, "properties": {"a": {
        "type": "string", "maxLength": 5, "x-kubernetes-validations": [{"rule": "size(self) > 0"}]}}}})
    assert texts(nested) == [f'{BASE}.properties[spec].properties[o].default.a: Invalid value: "string": '
                             "failed rule: size(self) > 0"]


def test_defaults_must_be_pruned_valid_and_outside_metadata():
    unknown = crd_with({"o": {"type": "object", "default": {"x": 1}, "properties": {"a": {"type": "integer"}}}})
    assert texts(unknown) == [f'{BASE}.properties[spec].properties[o].default: Invalid value: {{"x":1}}: '
                              "must not have unknown fields"]
    wrong = crd_with({"n": {"type": "integer", "minimum": 3, "default": 1}})
    (cause,) = check(wrong)
    assert cause.field == f"{BASE}.properties[spec].properties[n].default" and "minimum" in cause.message
    meta = crd_with({})
    root_of(meta)["properties"]["metadata"] = {"type": "object", "default": {"name": "x"}}
    assert texts(meta) == [f"{BASE}.properties[metadata].default: Forbidden: must not be set in top-level metadata"]


@pytest.mark.parametrize(("props", "expected"), [
    ({"a": {"description": "no type"}}, f"{BASE}.properties[spec].properties[a].type: Required value: must not be "
                                        "empty for specified object fields"),
    ({"a": {"type": "array"}}, f"{BASE}.properties[spec].properties[a].items: Required value: must be specified"),
    ({"a": {"type": "array", "items": {"type": "string"}, "uniqueItems": True}},
     f"{BASE}.properties[spec].properties[a].uniqueItems: Forbidden: uniqueItems cannot be set to true since the "
     "runtime complexity becomes quadratic"),
    ({"a": {"type": "object", "properties": {"b": {"type": "string"}}, "additionalProperties": {"type": "string"}}},
     f"{BASE}.properties[spec].properties[a].additionalProperties: Forbidden: additionalProperties and properties "
     "are mutual exclusive"),
    ({"a": {"type": "string", "x-kubernetes-list-type": "set"}},
     f'{BASE}.properties[spec].properties[a].type: Invalid value: "string": must be array if '
     "x-kubernetes-list-type is specified"),
    ({"a": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "object"}}},
     f'{BASE}.properties[spec].properties[a].items.x-kubernetes-map-type: Invalid value: "": must be atomic as '
     "item of a list with x-kubernetes-list-type=set"),
    ({"a": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k"],
            "items": {"type": "object", "properties": {"k": {"type": "string"}}}}},
     f"{BASE}.properties[spec].properties[a].items.properties[k].default: Required value: this property is in "
     "x-kubernetes-list-map-keys, so it must have a default or be a required property"),
    ({"a": {"type": "number", "ge": 0}},
     f'{BASE}.properties[spec].properties[a].ge: unknown field "{BASE}.properties[spec].properties[a].ge" '
     "(strict decoding error)"),
    ({"a": {"type": "string", "$ref": "#/x"}}, f"{BASE}.properties[spec].properties[a].$ref: Forbidden: $ref is not "
                                               "supported"),
])
def test_structural_and_extension_rules(props, expected):
    assert expected in texts(crd_with(props))


def test_root_must_be_an_object_without_additional_properties():
    crd = crd_with({}, additionalProperties={"type": "string"})
    assert f"{BASE}.additionalProperties: Forbidden: must not be used at the root" in texts(crd)


@pytest.mark.parametrize(("rule", "expected"), [
    ({"rule": "self.nope == 1"}, "compilation failed: ERROR: <input>: undefined field 'nope'"),
    ({"rule": "has(self.nope)"}, "compilation failed: ERROR: <input>: undefined field 'nope'"),
    ({"rule": "self.a =="}, "compilation failed"),
    ({"rule": "self.a == 1", "message": "two\nlines"}, "message must not contain line breaks"),
    ({"rule": "self.a == 1", "message": " "}, "message must be non-empty if specified"),
    ({"rule": " "}, "Required value: rule is not specified"),
    ({"rule": "self.a == 1", "reason": "Nope"}, 'Unsupported value: "Nope"'),
])
def test_rule_texts_are_checked(rule, expected):
    crd = crd_with({"o": {"type": "object", "properties": {"a": {"type": "integer"}},
                          "x-kubernetes-validations": [rule]}})
    assert any(expected in t for t in texts(crd)), texts(crd)


def test_old_self_only_on_correlatable_nodes():
    crd = crd_with({"l": {"type": "array", "maxItems": 4, "items": {
        "type": "integer", "x-kubernetes-validations": [{"rule": "self == oldSelf"}]}}})
    assert texts(crd) == [f'{BASE}.properties[spec].properties[l].items.x-kubernetes-validations[0].rule: Invalid '
                          f'value: "self == oldSelf": oldSelf cannot be used on the uncorrelatable portion of the '
                          f"schema within {BASE}.properties[spec].properties[l]"]
    listmap = crd_with({"l": {"type": "array", "maxItems": 4, "x-kubernetes-list-type": "map",
                              "x-kubernetes-list-map-keys": ["k"], "items": {
                                  "type": "object", "required": ["k"],
                                  "properties": {"k": {"type": "string", "maxLength": 8}},
                                  "x-kubernetes-validations": [{"rule": "self == oldSelf"}]}}})
    assert check(listmap) == []


def test_rule_cost_needs_bounds_on_lists_and_strings():
    unbounded = {"type": "array", "items": {"type": "string"},
                 "x-kubernetes-validations": [{"rule": "self.all(x, x.startsWith('a'))"}]}
    problems = texts(crd_with({"l": unbounded}))
    assert problems[0] == (
        f"{BASE}.properties[spec].properties[l].x-kubernetes-validations[0].rule: Forbidden: estimated rule cost "
        "exceeds budget by factor of more than 100x (try simplifying the rule, or adding maxItems, maxProperties, "
        "and maxLength where arrays, maps, and strings are declared)")
    assert problems[-1].startswith(f"{BASE}: Forbidden: x-kubernetes-validations estimated rule cost total")
    bounded = copy.deepcopy(unbounded)
    bounded["maxItems"], bounded["items"]["maxLength"] = 16, 64
    assert check(crd_with({"l": bounded})) == []


def test_rules_under_lists_are_multiplied_by_the_list_bound_and_totalled():
    item = {"type": "string", "maxLength": 1000, "x-kubernetes-validations": [{"rule": "self.startsWith('a')"}]}
    one = {"type": "array", "maxItems": 1000, "items": item}
    assert check(crd_with({"l": one})) == []  # about 2 million: within the per-rule budget
    many = crd_with({f"l{i}": copy.deepcopy(one) for i in range(60)})
    problems = texts(many)
    assert problems[-1].startswith(f"{BASE}: Forbidden: x-kubernetes-validations estimated rule cost total for "
                                   "entire OpenAPIv3 schema exceeds budget by factor of")
    assert sum("contributed to estimated rule cost total" in p for p in problems) == 4


def test_the_cost_bound_counts_what_rules_traverse():
    string = {"type": "string", "maxLength": 100}
    assert cel_cost.rule_cost("self == oldSelf", string) >= 100
    lst = {"type": "array", "maxItems": 10, "items": string}
    assert cel_cost.rule_cost("self.all(x, x.startsWith('a'))", lst) >= 10 * 100
    assert cel_cost.rule_cost("self == oldSelf", {"type": "array", "items": string}) >= cel_cost.UNBOUNDED
    with pytest.raises(cel_cost.RuleError):
        cel_cost.rule_cost("self.format(['a']) == 'a'", string)  # unknown to the bound: refused, not guessed


def test_printer_columns_are_checked():
    crd = crd_with({})
    crd["spec"]["versions"][0]["additionalPrinterColumns"] = [
        {"name": "Loss", "type": "float", "jsonPath": ".status.loss"},
        {"name": "Age", "type": "date", "jsonPath": "metadata.creationTimestamp"}]
    assert texts(crd) == [
        'spec.additionalPrinterColumns[0].type: Invalid value: "float": must be one of boolean,date,integer,number,string',
        'spec.additionalPrinterColumns[1].JSONPath: Invalid value: "metadata.creationTimestamp": must be a simple '
        "json path starting with ."]


def test_status_subresource_limits_the_root_schema():
    crd = crd_with({}, minProperties=1)
    crd["spec"]["versions"][0]["subresources"] = {"status": {}}
    assert any("are allowed at the root of the schema if the status subresource is enabled" in t for t in texts(crd))
    assert check_schema(root_of(crd), BASE) == []


def test_the_emulator_refuses_to_serve_a_crd_the_api_server_refuses():
    old = project_crd()
    root_of(old)["properties"]["metadata"] = OLD_METADATA
    with pytest.raises(ApiError) as refused:
        KubeEmulator(crds=[old])
    assert refused.value.code == 422 and REAL_METADATA_ERROR in refused.value.message
    emulator = KubeEmulator(crds=[project_crd()])  # the generated one is served
    assert emulator.store.kind("tj").kind == "TrainingJob"


def test_creating_a_refused_crd_over_http_is_422(kube_api_client):
    import json

    import kubernetes
    from kubernetes.client.exceptions import ApiException

    api = kubernetes.client.ApiextensionsV1Api(kube_api_client)
    old = crd_with({"n": {"type": "integer", "default": 1, "x-kubernetes-validations": [{"rule": "self > 1"}]}})
    with pytest.raises(ApiException) as refused:
        api.create_custom_resource_definition(old)
    body = json.loads(refused.value.body)
    assert refused.value.status == 422 and body["reason"] == "Invalid"
    assert body["details"]["causes"][0]["field"] == f"{BASE}.properties[spec].properties[n].default"
    assert "failed rule: self > 1" in body["message"]


def test_patterns_must_be_re2_and_names_must_match():
    crd = crd_with({"a": {"type": "string", "maxLength": 9, "pattern": "^(?!x)[a-z]+$"},
                    "b": {"type": "string", "pattern": "("}})
    crd["metadata"]["name"] = "thing.example.com"
    crd["spec"]["names"]["shortNames"] = ["T"]
    problems = texts(crd)
    assert 'metadata.name: Invalid value: "thing.example.com": must be spec.names.plural+"."+spec.group' in problems
    assert any(p.startswith("spec.names.shortNames[0]: Invalid value") for p in problems)
    assert any(p.startswith(f"{BASE}.properties[spec].properties[a].pattern: Invalid value") for p in problems)
    assert any(p.startswith(f"{BASE}.properties[spec].properties[b].pattern: Invalid value") for p in problems)


def test_message_expressions_are_compiled_and_costed():
    crd = crd_with({"o": {"type": "object", "properties": {"a": {"type": "integer"}}, "x-kubernetes-validations": [
        {"rule": "self.a > 0", "messageExpression": "self.nope"}]}})
    assert any("messageExpression: Invalid value" in t and "undefined field 'nope'" in t for t in texts(crd))
    ok = crd_with({"o": {"type": "object", "properties": {"a": {"type": "integer"}}, "x-kubernetes-validations": [
        {"rule": "self.a > 0", "messageExpression": "string(self.a) + ' is not positive'"}]}})
    assert check(ok) == []

"""Pruning, defaulting and validation against a CRD schema (tests/support/crd_schema.py)."""

from tests.support.crd_schema import CrdSchema, apply_defaults, prune
from tests.support.kinds import TRAININGJOB_CRD, kinds_from_crd, load_crds

SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string", "maxLength": 5},
            "rate": {"type": "number", "minimum": 0, "exclusiveMinimum": True, "default": 0.5},
            "mode": {"type": "string", "enum": ["a", "b"], "default": "a"},
            "nested": {"type": "object", "default": {}, "properties": {"k": {"type": "integer", "default": 3}}},
            "tags": {"type": "array", "items": {"type": "object", "properties": {
                "v": {"type": "string", "default": "x"}}}},
            "free": {"type": "object", "additionalProperties": {"type": "string"}},
            "raw": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "maybe": {"type": "string", "nullable": True},
        }},
        "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
    },
}


def test_prune_drops_undeclared_fields_and_nulls_but_keeps_metadata():
    removed: list[str] = []
    pruned = prune({"apiVersion": "v", "kind": "K", "metadata": {"anything": 1}, "extra": 1,
                    "spec": {"name": "a", "typo": 2, "mode": None, "maybe": None,
                             "tags": [{"v": "1", "bad": 1}], "free": {"x": "y"}, "raw": {"any": {"thing": 1}}},
                    "status": {"phase": "p", "kopf": {"progress": {}}}}, SCHEMA, "", removed)
    assert pruned == {"apiVersion": "v", "kind": "K", "metadata": {"anything": 1},
                      "spec": {"name": "a", "maybe": None, "tags": [{"v": "1"}], "free": {"x": "y"},
                               "raw": {"any": {"thing": 1}}},
                      "status": {"phase": "p"}}
    assert removed == ["extra", "spec.typo", "spec.tags[0].bad", "status.kopf"]


def test_defaults_fill_missing_fields_recursively():
    defaulted = apply_defaults({"spec": {"name": "a", "tags": [{}, {"v": "given"}]}}, SCHEMA)
    assert defaulted["spec"] == {"name": "a", "rate": 0.5, "mode": "a", "nested": {"k": 3},
                                 "tags": [{"v": "x"}, {"v": "given"}]}
    assert "status" not in defaulted  # absent objects without a default stay absent


def test_validation_names_each_invalid_field():
    schema = CrdSchema(SCHEMA)
    causes = schema.validate({"spec": {"name": "toolong", "rate": 0, "mode": "c", "nested": {"k": "3"}}})
    by_field = {c.field: c for c in causes}
    assert set(by_field) == {"spec.name", "spec.rate", "spec.mode", "spec.nested.k"}
    assert by_field["spec.mode"].reason == "FieldValueNotSupported"
    assert by_field["spec.nested.k"].reason == "FieldValueTypeInvalid"
    assert schema.validate({"spec": {"name": "ok", "rate": 0.1}}) == []
    missing = schema.validate({"spec": {}})
    assert [(c.field, c.reason) for c in missing] == [("spec.name", "FieldValueRequired")]


def test_the_trainingjob_crd_schema_defaults_a_minimal_spec_into_a_valid_one():
    (kind,) = kinds_from_crd(load_crds([TRAININGJOB_CRD])[0])
    assert kind.kind == "TrainingJob" and kind.namespaced and kind.has_status and kind.custom
    obj, removed = kind.schema.prune({"metadata": {"name": "x"}, "spec": {"tenant_id": "t1"}})
    obj = kind.schema.default(obj)
    assert removed == [] and kind.schema.validate(obj) == []
    assert obj["spec"]["training_kwargs"]["batch_size"] == 64 and obj["spec"]["startupTimeoutSeconds"] == 900

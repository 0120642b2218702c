from laxai_api.errors import validation_details


def test_validation_details_name_the_field_and_reason():
    details = validation_details(
        [
            {"loc": ("body", "training_kwargs", "num_epoch"), "type": "extra_forbidden", "msg": "Extra inputs"},
            {"loc": ("query", "limit"), "type": "less_than_equal", "msg": "Input should be <= 1000"},
            {"loc": ("body", 12), "type": "json_invalid", "msg": "JSON decode error",
             "ctx": {"error": "Expecting value"}},
        ]
    )
    assert details[0] == {
        "location": ["body", "training_kwargs", "num_epoch"], "field": "training_kwargs.num_epoch",
        "reason": "unknown field 'num_epoch'; did you mean 'num_epochs'?", "type": "extra_forbidden",
    }
    assert details[1]["field"] == "limit" and details[1]["reason"] == "Input should be <= 1000"
    assert details[2] == {"location": ["body"], "field": "body",
                          "reason": "invalid JSON at position 12: Expecting value", "type": "json_invalid"}

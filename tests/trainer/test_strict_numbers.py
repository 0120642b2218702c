from __future__ import annotations

import pytest

from laxai_trainer.strict_numbers import expects_number, reject_bool


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [(int, True), (float, True), (int | None, True), (float | None, True), (bool, False),
     (bool | None, False), (str, False), (int | bool, False), (list[int], False)],
)
def test_expects_number(annotation, expected):
    assert expects_number(annotation) is expected


def test_reject_bool():
    assert reject_bool(3, int) == 3 and reject_bool("3", int) == "3" and reject_bool(True, bool) is True
    with pytest.raises(ValueError, match="boolean true"):
        reject_bool(True, int | None)

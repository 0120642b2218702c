"""laxai_operator.quantity: Kubernetes quantities."""

from decimal import Decimal

import pytest

from laxai_operator.quantity import QuantityError, format_bytes, parse_quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("16Gi", 16 * 2**30),
        ("1.5Gi", Decimal("1.5") * 2**30),
        ("512Mi", 512 * 2**20),
        ("1Ki", 1024),
        ("2Ti", 2 * 2**40),
        ("1G", 10**9),
        ("1k", 1000),
        ("500M", 5 * 10**8),
        ("3500m", Decimal("3.5")),
        ("100u", Decimal("0.0001")),
        ("5n", Decimal("5e-9")),
        ("2", 2),
        ("0.5", Decimal("0.5")),
        (".5", Decimal("0.5")),
        ("1e3", 1000),
        ("1E6", 10**6),
        ("12e-1", Decimal("1.2")),
        (" 4Gi ", 4 * 2**30),
    ],
)
def test_parse(text, value):
    assert parse_quantity(text) == Decimal(value)


@pytest.mark.parametrize("text", ["", "Gi", "16GB", "16gi", "1.2.3", "abc", "1Gi2", "--1", "16 Gi"])
def test_parse_rejects(text):
    with pytest.raises(QuantityError, match="not a Kubernetes quantity"):
        parse_quantity(text)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (8 * 2**30, "8Gi"),
        (768 * 2**20, "768Mi"),
        (2**40, "1Ti"),
        (1536, "1536"),  # 1.5Ki: no whole binary suffix
        (1000, "1000"),
        (Decimal("1073741824.7"), "1Gi"),
    ],
)
def test_format_bytes(value, text):
    assert format_bytes(value) == text


def test_format_rejects_zero():
    with pytest.raises(QuantityError):
        format_bytes(0)


def test_half_of_odd_memory_round_trips():
    # 1.5Gi / 2 = 768Mi exactly: decimal arithmetic, no float drift.
    assert format_bytes(parse_quantity("1.5Gi") / 2) == "768Mi"
    assert format_bytes(parse_quantity("1G") / 2) == "500000000"

"""laxai_trainer.status: reported losses and metrics read at a glance (issue 10 item 9)."""

import math

import pytest

from laxai_trainer.status import Metrics, Progress, significant


@pytest.mark.parametrize(("value", "expected"), [
    (0.5082808136940002, 0.5083), (1234.5678, 1235.0), (0.000123456, 0.0001235), (2.0, 2.0),
    (0.0, 0.0), (-0.98765, -0.9877), (None, None),
])
def test_significant_keeps_four_digits(value, expected):
    assert significant(value) == expected


def test_significant_leaves_non_finite_values():
    assert math.isnan(significant(float("nan"))) and significant(float("inf")) == float("inf")


def test_progress_and_metrics_are_rounded_where_they_are_reported():
    progress = Progress(current_loss=0.5082808136940002, best_loss=0.41234567)
    assert (progress.current_loss, progress.best_loss) == (0.5083, 0.4123)
    metrics = Metrics(mAP=0.734567891, rank1=0.9, train_loss=0.123456789, val_loss=3.14159265)
    assert (metrics.mAP, metrics.rank1, metrics.train_loss, metrics.val_loss) == (0.7346, 0.9, 0.1235, 3.142)
    with pytest.raises(ValueError):
        Metrics(mAP=1.5)  # the bounds still hold


def test_same_kit_metrics_are_optional_reported_fractions():
    assert Metrics().same_kit_rank1 is None and Metrics().same_kit_mAP is None  # real data: no kit info
    metrics = Metrics(same_kit_rank1=0.612345, same_kit_mAP=0.5)
    assert metrics.same_kit_rank1 == 0.6123
    with pytest.raises(ValueError):
        Metrics(same_kit_mAP=1.2)

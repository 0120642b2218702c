from __future__ import annotations

import os

from laxai_trainer.cpus import available_cpus, workers_warning


def test_available_cpus_follows_the_affinity_mask():
    assert available_cpus() == len(os.sched_getaffinity(0))


def test_workers_warning_names_the_numbers_and_the_fix():
    assert workers_warning(2, 2) is None and workers_warning(0, 1) is None
    said = workers_warning(8, 2)
    assert "num_workers=8 exceeds the 2 CPU(s)" in said and "9 processes" in said
    assert "training_kwargs.num_workers to 1 or less" in said

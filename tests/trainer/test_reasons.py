"""laxai_trainer.reasons: one vocabulary of status reasons, whichever backend ran the job."""

from __future__ import annotations

import subprocess
import sys

from laxai_api.backends.local import classify_exit
from laxai_operator.resource import TrainingJobSpec
from laxai_operator.status_mapping import failure_reason
from laxai_trainer import exit_codes
from laxai_trainer.reasons import Reason
from tests.operator.k8s_objects import cond, job, pod


def test_importable_without_torch():
    code = "import sys, laxai_trainer.reasons; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_both_backends_name_a_config_error_alike():
    """Exit 3 is TrainerConfigError on the local backend and on Kubernetes (it was ConfigError locally)."""
    code = exit_codes.CONFIG_ERROR
    local = classify_exit(code, False, None, []).reason
    failed = job(conditions=[cond("Failed", "PodFailurePolicy")])
    pods = [pod(phase="Failed", terminated={"exitCode": code, "reason": "Error", "message": "bad config"})]
    operator, _ = failure_reason(failed, pods, TrainingJobSpec.model_validate({"tenant_id": "t"}))
    assert local == operator == Reason.trainer_config_error


def test_every_local_outcome_is_in_the_vocabulary():
    for code in (exit_codes.OK, exit_codes.FAILURE, exit_codes.CONFIG_ERROR, exit_codes.RETRY, -9, None):
        for cancel in (False, True):
            assert classify_exit(code, cancel, None, []).reason in set(Reason)

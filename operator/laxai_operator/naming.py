"""Names and labels the operator derives from a TrainingJob. Pure and deterministic.

The Job name is a function of the TrainingJob name only, so a handler that runs twice
(retry, restart, a second replica) addresses the same Job and can never make a second one.
"""

from __future__ import annotations

import hashlib
import re

from laxai_operator.resource import GROUP

MANAGED_BY = "laxai-operator"
PART_OF = "laxai-training"
APP_NAME = "laxai-trainer"
COMPONENT = "trainer"
CONTAINER_NAME = "trainer"

LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_TENANT = f"{GROUP}/tenant"
LABEL_TRAININGJOB = f"{GROUP}/trainingjob"
LABEL_QUEUE = "kueue.x-k8s.io/queue-name"
#: The full TrainingJob name (labels hold at most 63 characters; names up to 253).
ANNOTATION_TRAININGJOB = f"{GROUP}/trainingjob-name"

MAX_LABEL = 63
#: The Job controller names pods ``<job>-`` + 5 random characters and cuts that prefix to 58
#: characters (apiserver names.SimpleNameGenerator: 63 - 5); a Job name of at most 57 keeps every
#: pod name ``<job>-xxxxx``, which the trainer-status admission policy relies on to tie a pod's
#: token to its TrainingJob (``status.jobName``).
MAX_JOB_NAME = MAX_LABEL - 5 - 1
_HASH_LEN = 8


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:_HASH_LEN]


def bounded(text: str, limit: int = MAX_LABEL) -> str:
    """``text`` if it fits in ``limit`` chars, else a prefix + '-' + a hash of the whole."""
    if len(text) <= limit:
        return text
    head = re.sub(r"[^A-Za-z0-9]+$", "", text[: limit - _HASH_LEN - 1])
    return f"{head}-{_digest(text)}"


def job_name(trainingjob_name: str) -> str:
    """The deterministic batch/v1 Job name: ``tj-<name>``, truncated + hashed to 57 chars."""
    return bounded(f"tj-{trainingjob_name}", MAX_JOB_NAME)


def trainingjob_of_job(job: str) -> str | None:
    """The TrainingJob name a Job name was made from, when it was not truncated; else None."""
    name = job.removeprefix("tj-")
    return name if name != job and job_name(name) == job else None


def label_value(trainingjob_name: str) -> str:
    """The TrainingJob name as a valid label value (≤ 63 chars)."""
    return bounded(trainingjob_name)


def selector(trainingjob_name: str) -> str:
    """Label selector of the Job and pods of one TrainingJob."""
    return f"{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_TRAININGJOB}={label_value(trainingjob_name)}"

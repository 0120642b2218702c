"""Which progress reporters a run uses (see :mod:`laxai_trainer.progress`).

- always a :class:`~laxai_trainer.progress.LogReporter`;
- ``--progress-file PATH`` → :class:`~laxai_trainer.progress.JsonFileReporter`;
- stderr is a terminal → :class:`~laxai_trainer.progress.TqdmReporter`;
- env ``LAXAI_TRAININGJOB_NAME`` set (in the trainer pod) →
  ``laxai_trainer.reporters.kubernetes.KubernetesStatusReporter.from_env()``, imported
  lazily so local runs never need the kubernetes client. If that import or
  construction fails, the run goes on without it and says so in the log.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from laxai_trainer.progress import JsonFileReporter, LogReporter, Reporter, TqdmReporter

log = logging.getLogger(__name__)

TRAININGJOB_ENV = "LAXAI_TRAININGJOB_NAME"


def kubernetes_reporter() -> Reporter | None:
    """The TrainingJob status reporter, or None (logged) when it cannot be used here."""
    try:
        from laxai_trainer.reporters.kubernetes import KubernetesStatusReporter
    except ImportError as exc:
        log.error(
            "%s is set but the Kubernetes status reporter cannot be imported (%s): "
            "progress will not reach the TrainingJob status",
            TRAININGJOB_ENV,
            exc,
        )
        return None
    try:
        return KubernetesStatusReporter.from_env()
    except Exception as exc:
        log.error("Kubernetes status reporter unavailable (%s): progress will not reach the TrainingJob", exc)
        return None


def make_reporters(progress_file: str | Path | None = None, tty: bool = False) -> list[Reporter]:
    """The reporters for this process (see the module docstring)."""
    reporters: list[Reporter] = [LogReporter()]
    if progress_file:
        reporters.append(JsonFileReporter(progress_file))
    if tty:
        reporters.append(TqdmReporter())
    if os.environ.get(TRAININGJOB_ENV):
        k8s = kubernetes_reporter()
        if k8s is not None:
            reporters.append(k8s)
    return reporters

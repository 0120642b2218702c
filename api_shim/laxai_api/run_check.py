"""Would a new job on an earlier run train anything? Read from the run's run.json in storage.

``resume_from_checkpoint: true`` (the default) continues an earlier run of the same
``custom_name``; when that run already trained everything the request asks for, the API says
so (409 ``run_already_finished``) instead of starting a job that trains nothing. The trainer
refuses the same case (exit 3) for jobs that do not come through the API; it also handles the
rest (archiving on ``false``, a job's own retries), so this check reads only, and storage
trouble lets the request through.
"""

from __future__ import annotations

import logging

from laxai_api.errors import RunAlreadyFinished
from laxai_trainer.config import TrainingConfig
from laxai_trainer.run_layout import RunLayout, meta_nothing_left, nothing_left_message, read_meta

log = logging.getLogger(__name__)


def may_be_finished(config: TrainingConfig) -> bool:
    """Whether the request continues an earlier run, so :func:`finished_run` has storage to read."""
    return bool(config.custom_name and config.resume_from_checkpoint)


def finished_run(storage_root: str, config: TrainingConfig) -> RunAlreadyFinished | None:
    """The 409 for a request that would continue a finished run, else None. Blocking (storage)."""
    if not may_be_finished(config):
        return None
    layout = RunLayout(config.tenant_id, config.custom_name)
    try:
        from laxai_trainer.storage import open_storage  # GCS client loaded only for gs:// roots

        meta = read_meta(open_storage(storage_root), layout)
    except Exception as exc:  # noqa: BLE001 - the trainer checks again; say why in the log
        log.warning("run %s: run.json not readable (%s); not checked", layout.prefix, type(exc).__name__)
        return None
    num_epochs = config.training_kwargs.num_epochs
    if not meta_nothing_left(meta, num_epochs):
        return None
    done = int(meta.get("epochs_completed") or 0)
    return RunAlreadyFinished(nothing_left_message(config.custom_name, done, num_epochs),
                              config.custom_name, done, num_epochs)

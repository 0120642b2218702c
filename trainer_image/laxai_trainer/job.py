"""One training run, end to end: sync → data → model → train → outputs.

:func:`run_job` is what ``laxai-train run`` calls once the config is validated. :class:`Job`
orchestrates; the logic lives with its concern, and Job owns the run folder
(:mod:`laxai_trainer.run_layout`):

1. the run folder is claimed (:func:`laxai_trainer.run_claim.claim_run`): this job's own
   retry, a new run, an earlier run continued, or an earlier run archived and started over;
   then ``config.json`` and ``run.json`` (started, with the job id and attempt) are written;
2. the tenant's datasets are synced to the local cache (:mod:`laxai_trainer.sync`);
3. train/val splits are scanned and loaders built (:mod:`laxai_trainer.reid.data.pipeline`);
4. the model is built with the seed, then resumed from ``checkpoints/last.pt`` (a retry
   always; an earlier run with ``resume_from_checkpoint``; changed hyperparameters are
   applied) or initialised by :mod:`laxai_trainer.reid.models.init_weights`;
5. the :class:`~laxai_trainer.reid.engine.trainer.Trainer` runs; after each epoch: checkpoint,
   best weights, ``metrics.json`` (:mod:`laxai_trainer.reid.metrics.report`), intermediate
   files, wandb, progress (:mod:`laxai_trainer.run_messages`), log upload;
6. final outputs (:mod:`laxai_trainer.reid.models.export`): ``final/model.pt``, TorchScript,
   ``final/model.json``, ``metrics.json``, ``run.json`` (finished), the wandb artifact and
   offline files.

A stop request (SIGTERM, set by the CLI) ends with a checkpoint and outcome
``preempted``; errors propagate (the CLI maps them to exit codes).
"""

from __future__ import annotations

import logging
import platform
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from laxai_trainer import run_messages as say
from laxai_trainer.config import TrainingConfig
from laxai_trainer.cpus import available_cpus, workers_warning
from laxai_trainer.errors import ConfigError
from laxai_trainer.progress import ProgressTracker, now_rfc3339
from laxai_trainer.reid.data.pipeline import Loaders, build_loaders
from laxai_trainer.reid.engine import checkpoint as ckpt
from laxai_trainer.reid.engine.device import pick_device
from laxai_trainer.reid.engine.trainer import Outcome, Trainer, seed_everything
from laxai_trainer.reid.metrics import report
from laxai_trainer.reid.models.export import export_model, model_card
from laxai_trainer.reid.models.init_weights import InitSource, initialise
from laxai_trainer.reid.models.model import build_model
from laxai_trainer.run_claim import Claim, check_continuation, claim_run, find_claim
from laxai_trainer.run_layout import RunLayout, read_meta, write_json
from laxai_trainer.status import Metrics, Phase
from laxai_trainer.wandb_run import WandbRun, artifact_name

log = logging.getLogger(__name__)

#: Least seconds between two mid-epoch progress reports (each epoch end always reports).
STEP_REPORT_SECONDS = 5.0


@dataclass
class JobOptions:
    storage_root: str
    run_name: str
    cache_dir: Path
    log_file: Path | None = None
    device: str = "auto"
    allow_download: bool = True
    stop: threading.Event = field(default_factory=threading.Event)
    #: The job's identity (TrainingJob uid / local task id): its retries resume its checkpoint.
    job_id: str | None = None
    #: Exists at a stop request when the stop is a cancel (the local API writes it), not a preemption.
    cancel_file: Path | None = None
    #: Asked at a stop request: True when the stop is a cancel (in a pod: the TrainingJob's
    #: spec.cancel, read by the status reporter). Must not raise.
    cancel_requested: Callable[[], bool] | None = None

    def stop_is_cancel(self) -> bool:
        if self.cancel_file is not None and self.cancel_file.exists():
            return True
        return self.cancel_requested is not None and self.cancel_requested()


@dataclass
class JobResult:
    outcome: Outcome
    run_uri: str
    metrics: Metrics | None
    init_source: InitSource | None


class Job:
    def __init__(self, config: TrainingConfig, options: JobOptions, tracker: ProgressTracker) -> None:
        from laxai_trainer.storage import open_storage

        self.config = config
        self.options = options
        self.tracker = tracker
        self.storage = open_storage(options.storage_root)
        self.layout = RunLayout(config.tenant_id, options.run_name)
        self.run_uri = self.storage.uri(self.layout.prefix)
        self.work_dir = options.cache_dir / "work" / config.tenant_id / options.run_name
        self.tmp_dir = self.work_dir / "tmp"
        self.wandb = WandbRun()
        self.meta: dict[str, Any] = {
            "run_name": options.run_name,
            "tenant_id": config.tenant_id,
            "run_uri": self.run_uri,
            "job_id": options.job_id,
            "attempt": 1,
            "num_epochs": config.training_kwargs.num_epochs,
            "started_at": now_rfc3339(),
            "status": "running",
            "host": platform.node(),
            "torch": torch.__version__,
        }
        self._last_step_report = 0.0
        self.claim: Claim | None = None
        self.workers_warning: str | None = None

    @property
    def num_epochs(self) -> int:
        return self.config.training_kwargs.num_epochs

    # ---- run folder and logs -----------------------------------------------------------

    def upload_log(self) -> None:
        path = self.options.log_file
        if path is None or not path.exists():
            return
        try:
            self.storage.upload_file(path, self.layout.log)
        except Exception as exc:  # logs are best effort; the run's results are not
            log.warning("could not upload the log to %s: %s", self.storage.uri(self.layout.log), exc)

    def upload_wandb_files(self) -> None:
        """Offline wandb files to {run}/wandb/ (``wandb sync`` can publish them later)."""
        if self.wandb.mode != "offline":
            return
        root = self.work_dir / "wandb"
        pairs = [(p, self.layout.wandb(p.relative_to(root).as_posix())) for p in WandbRun.offline_files(self.work_dir)]
        try:
            self.storage.upload_many(pairs)
        except Exception as exc:  # wandb must never fail the job
            log.warning("could not upload the offline wandb files: %s", exc)

    def record_failure(self, exc: BaseException) -> None:
        if self.claim is None:  # refused before claiming the folder: run.json is another job's
            return
        try:
            self.write_meta(status="failed", error=f"{type(exc).__name__}: {exc}", finished_at=now_rfc3339())
        except Exception as meta_exc:  # storage may be what failed
            log.debug("run.json not updated: %s", meta_exc)

    def write_meta(self, **fields: Any) -> None:
        self.meta.update(fields)
        write_json(self.storage, self.layout.run_meta, self.meta)

    def claim_run(self) -> Claim:
        self.claim, record = claim_run(self.storage, self.layout, self.options.job_id,
                                       self.config.resume_from_checkpoint, self.num_epochs, now_rfc3339())
        self.meta.update(record)
        return self.claim

    def save_checkpoint(self, trainer: Trainer) -> str:
        """``last.pt``, signed with the job and attempt that wrote it; returns its path."""
        payload = trainer.checkpoint_payload()
        payload["writer"] = {"job_id": self.options.job_id, "attempt": self.meta["attempt"], "host": self.meta["host"]}
        path = ckpt.checkpoint_path(self.layout.prefix, ckpt.LAST)
        ckpt.save(self.storage, path, payload, self.tmp_dir)
        return path

    # ---- phases ------------------------------------------------------------------------

    def sync(self) -> list[Path]:
        from laxai_trainer.sync import sync_datasets

        tenant = self.config.tenant_id
        self.tracker.update(message=f"Listing datasets of tenant {tenant} in {self.storage.uri(tenant)}")

        def on_progress(found: int, processed: int, message: str) -> None:
            self.tracker.update(datasets_found=found, datasets_processed=processed, message=message)

        result = sync_datasets(
            self.storage, tenant, self.options.cache_dir / "datasets", frames=self.config.frames,
            on_progress=on_progress,
        )
        self.write_meta(sync=result.as_dict())
        return list(result.dataset_dirs)

    def loaders(self, dataset_dirs: list[Path], device: torch.device) -> Loaders:
        tk = self.config.training_kwargs
        self.workers_warning = workers_warning(tk.num_workers, available_cpus())
        if self.workers_warning:
            log.warning("%s", self.workers_warning)
        return build_loaders(
            dataset_dirs, tk, self.config.tenant_id, device, self.options.cache_dir / "crops" / self.config.tenant_id,
            lambda done, total, message: self.tracker.update(message=message),
        )

    def start_model(self, trainer: Trainer) -> InitSource:
        """Resume from the run's checkpoint (a retry, or an earlier run continued), or initialise."""
        cfg = self.config
        found = self.claim or find_claim(self.storage, self.layout, read_meta(self.storage, self.layout),
                                         self.options.job_id, cfg.resume_from_checkpoint)
        last = ckpt.checkpoint_path(self.layout.prefix, ckpt.LAST)
        if found.loads_checkpoint:
            payload = ckpt.load(self.storage, last, self.tmp_dir)
            if payload is not None:
                return self.resume(trainer, payload, found, last)
            log.info("no checkpoint at %s: starting a new run", self.storage.uri(last))
        source = initialise(trainer.model, cfg.model_kwargs, cfg.training_kwargs.force_pretraining, self.storage,
                            cfg.tenant_id, self.options.allow_download)
        trainer.state.init_source = source.as_dict()
        return source

    def resume(self, trainer: Trainer, payload: dict[str, Any], found: Claim, last: str) -> InitSource:
        changes = trainer.load_checkpoint(payload)
        st = trainer.state
        writer = payload.get("writer") or {}
        log.info("checkpoint written by job %s, attempt %s", writer.get("job_id"), writer.get("attempt"))
        earlier_epochs = (payload.get("hyperparameters") or {}).get("num_epochs")
        if check_continuation(found.kind, writer.get("job_id") != self.options.job_id, st.epoch, st.stopped_early,
                              earlier_epochs, self.num_epochs, self.options.run_name):
            log.info("the earlier run stopped early after epoch %d; continuing to %d epochs", st.epoch,
                     self.num_epochs)
            st.reopen()
        for change in changes:
            log.info("resumed with a changed hyperparameter: %s (applied from the first resumed step)", change)
        self.meta["changed_on_resume"] = changes
        trainer.best_weights = ckpt.load_best_weights(self.storage, self.layout, st.best_epoch, st.best_map,
                                                      self.tmp_dir)
        if trainer.best_weights is None and st.best_epoch:
            log.warning("best-epoch weights of the resumed run not found: the final model will be the last epoch's")
        where = f"epoch {st.epoch}" + (f", step {st.step}" if st.step else "")
        return InitSource("checkpoint", self.storage.uri(last), f"continuing after {where}")

    # ---- hooks called by the Trainer ---------------------------------------------------

    def epoch_end(self, trainer: Trainer, record: dict[str, Any], improved: bool) -> None:
        st = trainer.state
        self.save_checkpoint(trainer)
        if improved:
            path = ckpt.checkpoint_path(self.layout.prefix, ckpt.BEST)
            ckpt.save(self.storage, path, trainer.best_checkpoint(record), self.tmp_dir)
        write_json(self.storage, self.layout.metrics, report.metrics_document(st, None))
        self.write_meta(epochs_completed=st.epoch, stopped_early=st.stopped_early)  # what the API reads
        if self.config.save_intermediate:
            write_json(self.storage, self.layout.intermediate(record["epoch"]), record)
        self.wandb.log_epoch(record["epoch"], {k: v for k, v in record.items() if k != "epoch"})
        self.tracker.epoch_done(
            record["epoch"],
            record["epoch_seconds"],
            total_epochs=self.num_epochs,
            current_loss=record["train_loss"],
            best_loss=st.best_val_loss,
            current_map=record["mAP"],
            best_map=max(st.best_map, 0.0),
            metrics=report.best_metrics(st, self.run_uri),
            message=say.epoch_done(record, self.num_epochs, improved, st.stopped_early),
        )
        self.upload_log()

    def step_end(self, trainer: Trainer, epoch: int, step: int, steps: int | None, loss: torch.Tensor) -> None:
        now = time.monotonic()
        last = steps is not None and step >= steps  # validation follows: say so at once
        if now - self._last_step_report < STEP_REPORT_SECONDS and not last:
            return
        self._last_step_report = now
        message = say.step_done(epoch, self.num_epochs, step, steps, loss, self.workers_warning)
        self.tracker.step(epoch, step, steps, trainer.state.partial_seconds, message=message)

    def preempted(self, trainer: Trainer) -> None:
        st = trainer.state
        path = self.save_checkpoint(trainer)
        where = f"epoch {st.epoch + 1}, step {st.step}" if st.step else f"the end of epoch {st.epoch}"
        message = say.stopped(where, self.storage.uri(path), self.options.stop_is_cancel())
        log.warning("%s", message)
        self.tracker.update(message=message)

    # ---- the run -----------------------------------------------------------------------

    def run(self) -> JobResult:
        cfg = self.config
        self.tracker.update(status=Phase.running, total_epochs=self.num_epochs, message="Starting")
        self.claim_run()
        write_json(self.storage, self.layout.config, cfg.model_dump(mode="json"))
        self.write_meta()
        device = pick_device(self.options.device)
        dataset_dirs = self.sync()
        if self.options.stop.is_set():  # stopped before any training: nothing to checkpoint
            message = say.stopped_before_training(self.options.stop_is_cancel())
            log.warning("%s", message)
            self.tracker.update(message=message)
            return JobResult("preempted", self.run_uri, None, None)
        data = self.loaders(dataset_dirs, device)
        seed_everything(cfg.training_kwargs.seed)
        trainer = Trainer(build_model(cfg.model_kwargs), cfg, device, data.train, data.val, self.options.stop,
                          num_classes=data.num_classes, val_kits=data.val_kits)
        source = self.start_model(trainer)
        st = trainer.state
        log.info("model weights: %s", source.describe())
        self.write_meta(init_source=source.as_dict(), device=str(device), data=data.summary,
                        resumed_at_epoch=st.epoch if source.kind == "checkpoint" else None,
                        epochs_completed=st.epoch, stopped_early=st.stopped_early)
        self.tracker.update(message=say.training_started(str(device), source.describe(), self.workers_warning),
                            current_epoch=st.epoch, metrics=report.best_metrics(st, self.run_uri))
        self.wandb.start(self.options.run_name, cfg.wandb_tags, cfg.model_dump(mode="json"), self.work_dir,
                         run_id=st.wandb_id)
        st.wandb_id = self.wandb.run_id or st.wandb_id
        outcome = trainer.fit(self)
        if outcome == "preempted":
            self.write_meta(status="preempted")
            self.wandb.close_quietly(exit_code=1)
            self.upload_wandb_files()  # this pod's local files do not outlive it
            return JobResult(outcome, self.run_uri, report.best_metrics(trainer.state, self.run_uri), source)
        return JobResult(outcome, self.run_uri, self.finalize(trainer, outcome), source)

    def finalize(self, trainer: Trainer, outcome: Outcome) -> Metrics | None:
        cfg, st, layout = self.config, trainer.state, self.layout
        self.tracker.update(message="Writing the final model")
        exported = export_model(trainer.best_model(), self.work_dir / "final")
        self.storage.upload_file(exported.state_dict, layout.final_model)
        model_uri = self.storage.uri(layout.final_model)
        torchscript_error = exported.torchscript_error
        if exported.torchscript is not None:
            try:
                self.storage.upload_file(exported.torchscript, layout.final_torchscript)
            except Exception as exc:  # the state_dict above is the primary output
                torchscript_error = str(exc)
                log.error("TorchScript upload failed (the state_dict is saved): %s", exc)
        metrics = report.best_metrics(st, self.run_uri, model_uri)
        finished = now_rfc3339()
        write_json(self.storage, layout.final_meta, model_card(
            cfg.model_kwargs, self.options.run_name, st.best_epoch,
            None if metrics is None else metrics.model_dump(mode="json"), finished,
        ))
        write_json(self.storage, layout.metrics, report.metrics_document(st, metrics))
        best = ckpt.checkpoint_path(layout.prefix, ckpt.BEST)
        if not cfg.save_intermediate and self.storage.exists(best):
            self.storage.delete(best)
        self.wandb.finish(report.summary(metrics), exported.state_dict,
                          artifact_name(cfg.tenant_id, self.options.run_name))
        self.upload_wandb_files()
        self.write_meta(status=outcome, finished_at=finished, torchscript_error=torchscript_error,
                        epochs_completed=st.epoch, stopped_early=st.stopped_early)
        message = say.finished(outcome == "early_stopped", st.epoch, metrics, model_uri)
        log.info(message)
        self.tracker.finish(Phase.completed, message, metrics)
        return metrics


def run_job(config: TrainingConfig, options: JobOptions, tracker: ProgressTracker) -> JobResult:
    """Run one job; errors are logged (so the uploaded log has them) and re-raised."""
    try:
        job = Job(config, options, tracker)
    except ConfigError as exc:  # an unusable storage root
        log.error("configuration error: %s", exc)
        raise
    try:
        return job.run()
    except ConfigError as exc:
        log.error("configuration or data error: %s", exc)
        job.record_failure(exc)
        raise
    except Exception as exc:
        log.exception("training failed")
        job.record_failure(exc)
        raise
    finally:
        job.wandb.close_quietly()
        job.upload_log()

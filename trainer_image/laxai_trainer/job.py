"""One training run, end to end: sync → data → model → train → outputs.

:func:`run_job` is what ``laxai-train run`` calls once the config is validated.
It wires the pieces together and owns the run folder (:mod:`laxai_trainer.run_layout`):

1. the run folder is claimed (:mod:`laxai_trainer.run_claim`): this job's own retry, a new
   run, an earlier run continued, or an earlier run archived and started over; then
   ``config.json`` and ``run.json`` (started, with the job id and attempt) are written;
2. the tenant's datasets are synced to the local cache (progress per dataset);
3. train/val splits are scanned and loaders built (local files only);
4. the model is built with the seed, then resumed from ``checkpoints/last.pt`` (a retry
   always; an earlier run with ``resume_from_checkpoint``; changed hyperparameters are
   applied) or initialised by :mod:`laxai_trainer.reid.models.init_weights`;
5. the :class:`~laxai_trainer.reid.engine.trainer.Trainer` runs; after each epoch: checkpoint,
   best weights, ``metrics.json``, intermediate files, wandb, progress, log upload;
6. final outputs: ``final/model.pt``, TorchScript, ``final/model.json``, ``metrics.json``,
   ``run.json`` (finished), the wandb artifact and offline files.

A stop request (SIGTERM, set by the CLI) ends with a checkpoint and outcome
``preempted``; errors propagate (the CLI maps them to exit codes).
"""

from __future__ import annotations

import io
import logging
import platform
import signal
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from laxai_trainer.config import TrainingConfig
from laxai_trainer.cpus import available_cpus, workers_warning
from laxai_trainer.errors import ConfigError
from laxai_trainer.progress import ProgressTracker, now_rfc3339
from laxai_trainer.reid.data.loaders import IMAGENET_MEAN, IMAGENET_STD, INPUT_SIZE
from laxai_trainer.reid.engine import checkpoint as ckpt
from laxai_trainer.reid.engine.trainer import Outcome, Trainer, seed_everything
from laxai_trainer.reid.metrics.evaluate import kit_per_image, warn_shared_players
from laxai_trainer.reid.models.init_weights import InitSource, initialise
from laxai_trainer.reid.models.model import architecture, build_model
from laxai_trainer.run_claim import Claim, archive_run, archive_stamp, claim, outputs
from laxai_trainer.run_layout import (
    RunLayout,
    meta_nothing_left,
    nothing_left,
    nothing_left_message,
    read_json,
    read_meta,
    write_json,
)
from laxai_trainer.safe_load import load_tensors
from laxai_trainer.status import Metrics, Phase, significant
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


def pick_device(name: str) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("LAXAI_DEVICE is cuda but no CUDA device is available")
        return torch.device("cuda")
    return torch.device("cpu")


def best_metrics(state: ckpt.TrainState, run_uri: str, model_uri: str | None = None) -> Metrics | None:
    """The status Metrics: best epoch's validation metrics, last epoch's train loss."""
    if not state.history:
        return None
    best = next((r for r in state.history if r["epoch"] == state.best_epoch), state.history[-1])
    return Metrics(
        rank1=best["rank1"],
        rank5=best["rank5"],
        rank10=best["rank10"],
        mAP=best["mAP"],
        train_loss=state.history[-1]["train_loss"],
        val_loss=best["val_loss"],
        same_kit_rank1=best.get("same_kit_rank1"),
        same_kit_mAP=best.get("same_kit_mAP"),
        best_epoch=best["epoch"],
        epochs_completed=state.epoch,
        model_uri=model_uri,
        run_uri=run_uri,
    )


def metrics_document(state: ckpt.TrainState, final: Metrics | None) -> dict[str, Any]:
    """metrics.json: every epoch, and the final (best-epoch) metrics once the run ended."""
    return {
        "epochs": state.history,
        "best_epoch": state.best_epoch or None,
        "stopped_early": state.stopped_early,
        "final": None if final is None else final.model_dump(mode="json", exclude={"run_uri", "model_uri"}),
    }


def ignore_sigterm_in_workers(loader: Any) -> None:
    """DataLoader workers share the trainer's process group: a group SIGTERM must not kill
    them mid-step (the trainer finishes the step, checkpoints, then ends them itself)."""
    if getattr(loader, "num_workers", 0) <= 0:
        return
    previous = loader.worker_init_fn
    loader.worker_init_fn = _WorkerInit(previous)


class _WorkerInit:
    """Picklable worker_init_fn: ignore SIGTERM, then the loader's own init."""

    def __init__(self, previous: Any) -> None:
        self.previous = previous

    def __call__(self, worker_id: int) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if self.previous is not None:
            self.previous(worker_id)


class Job:
    def __init__(self, config: TrainingConfig, options: JobOptions, tracker: ProgressTracker) -> None:
        from laxai_trainer.storage import open_storage

        self.config = config
        self.options = options
        self.val_kits: torch.Tensor | None = None  # kit id per val image (same-kit metrics)
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

    # ---- small helpers -----------------------------------------------------------------

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

    def loaders(self, dataset_dirs: list[Path], device: torch.device) -> tuple[Any, Any, dict[str, Any]]:
        from laxai_trainer.reid.data import loaders as data

        tk = self.config.training_kwargs
        train_index = data.scan_split(dataset_dirs, "train", tk.min_images_per_player, self.config.tenant_id)
        val_index = data.scan_split(dataset_dirs, "val", tk.min_images_per_player, self.config.tenant_id)
        self.workers_warning = workers_warning(tk.num_workers, available_cpus())
        if self.workers_warning:
            log.warning("%s", self.workers_warning)
        warn_shared_players(train_index, val_index)
        self.val_kits = kit_per_image(val_index, dataset_dirs)
        summary: dict[str, Any] = {
            "datasets": [p.name for p in dataset_dirs],
            "train": train_index.summary(),
            "val": val_index.summary(),
        }
        if tk.input_pipeline == "device":
            from laxai_trainer.reid.data.batches import build_device_loaders

            def on_progress(done: int, total: int, message: str) -> None:
                self.tracker.update(message=message)

            train_loader, val_loader, summary["crop_cache"] = build_device_loaders(
                dataset_dirs, train_index, val_index, tk, device,
                self.options.cache_dir / "crops" / self.config.tenant_id, on_progress,
            )
            return train_loader, val_loader, summary
        train_loader = data.build_train_loader(train_index, tk, device, tk.seed)
        val_loader = data.build_val_loader(val_index, tk, device)
        for loader in (train_loader, val_loader):
            ignore_sigterm_in_workers(loader)
        return train_loader, val_loader, summary

    def find_claim(self, previous: dict[str, Any] | None) -> Claim:
        """What this job does with the run folder (:mod:`laxai_trainer.run_claim`); reads only."""
        has_outputs = previous is not None or bool(outputs(self.storage, self.layout))
        return claim(previous, self.options.job_id, self.config.resume_from_checkpoint, has_outputs)

    def claim_run(self) -> Claim:
        """Claim the run folder before writing to it: archive an earlier run that is started over,
        refuse to continue one that has nothing left to train."""
        previous = read_meta(self.storage, self.layout)
        found = self.find_claim(previous)
        name, tk = self.options.run_name, self.config.training_kwargs
        self.meta.update(attempt=found.attempt, claim=found.kind, previous_job_id=found.previous_job)
        if found.kind == "retry":
            log.info("attempt %d of job %s: continuing from its own checkpoint (a job's retries always "
                     "resume, whatever resume_from_checkpoint says)", found.attempt, found.previous_job)
            # what the job's first attempt found stays on record (attempt > 1 says it is a retry)
            self.meta.update({k: previous[k] for k in ("archived_to", "previous_job_id", "claim") if k in previous})
        elif found.kind == "continue" and meta_nothing_left(previous, tk.num_epochs):
            raise ConfigError(nothing_left_message(name, int(previous.get("epochs_completed") or 0), tk.num_epochs))
        elif found.kind == "restart":
            target = archive_run(self.storage, self.layout, archive_stamp(previous, now_rfc3339()))
            log.warning("resume_from_checkpoint is false: the earlier run's outputs were moved to %s; "
                        "starting over", self.storage.uri(target))
            self.meta["archived_to"] = self.storage.uri(target)
        self.claim = found
        return found

    def checkpoint(self, trainer: Trainer) -> dict[str, Any]:
        """The trainer's checkpoint, signed with the job and attempt that wrote it."""
        payload = trainer.checkpoint_payload()
        payload["writer"] = {"job_id": self.options.job_id, "attempt": self.meta["attempt"], "host": self.meta["host"]}
        return payload

    def start_model(self, trainer: Trainer) -> InitSource:
        """Resume from the run's checkpoint (a retry, or an earlier run continued), or initialise."""
        cfg = self.config
        found = self.claim or self.find_claim(read_meta(self.storage, self.layout))
        last = ckpt.checkpoint_path(self.layout.prefix, ckpt.LAST)
        if found.loads_checkpoint:
            payload = ckpt.load(self.storage, last, self.tmp_dir)
            if payload is not None:
                return self._resume(trainer, payload, found, last)
            log.info("no checkpoint at %s: starting a new run", self.storage.uri(last))
        source = initialise(
            trainer.model,
            cfg.model_kwargs,
            cfg.training_kwargs.force_pretraining,
            self.storage,
            cfg.tenant_id,
            self.options.allow_download,
        )
        trainer.state.init_source = source.as_dict()
        return source

    def _resume(self, trainer: Trainer, payload: dict[str, Any], found: Claim, last: str) -> InitSource:
        tk = self.config.training_kwargs
        changes = trainer.load_checkpoint(payload)
        st = trainer.state
        writer = payload.get("writer") or {}
        log.info("checkpoint written by job %s, attempt %s", writer.get("job_id"), writer.get("attempt"))
        # An earlier job's checkpoint (also on a retry that never wrote its own yet).
        if found.kind == "continue" or writer.get("job_id") != self.options.job_id:
            earlier = (payload.get("hyperparameters") or {}).get("num_epochs")
            if nothing_left(st.epoch, st.stopped_early, earlier, tk.num_epochs):
                if found.kind == "continue":
                    raise ConfigError(nothing_left_message(self.options.run_name, st.epoch, tk.num_epochs))
            elif st.stopped_early:  # asked for more epochs than the early-stopped run: train them
                log.info("the earlier run stopped early after epoch %d; continuing to %d epochs",
                         st.epoch, tk.num_epochs)
                st.stopped_early, st.epochs_without_improvement = False, 0
        for change in changes:
            log.info("resumed with a changed hyperparameter: %s (applied from the first resumed step)", change)
        self.meta["changed_on_resume"] = changes
        self._load_best_weights(trainer)
        where = f"epoch {st.epoch}" + (f", step {st.step}" if st.step else "")
        return InitSource("checkpoint", self.storage.uri(last), f"continuing after {where}")

    def _load_best_weights(self, trainer: Trainer) -> None:
        """Best-epoch weights of a resumed run: best.pt, else the final model of an earlier finish."""
        best = ckpt.checkpoint_path(self.layout.prefix, ckpt.BEST)
        payload = ckpt.load(self.storage, best, self.tmp_dir)
        if payload is not None and payload.get("epoch") == trainer.state.best_epoch:
            trainer.best_weights = payload["model"]
            return
        if self.storage.exists(self.layout.final_meta) and self.storage.exists(self.layout.final_model):
            meta = read_json(self.storage, self.layout.final_meta)
            # Only the final model this very checkpoint history produced (not an older run's).
            # (model.json's metrics are reported figures, rounded like every reported metric)
            if meta.get("best_epoch") == trainer.state.best_epoch and (meta.get("metrics") or {}).get(
                "mAP"
            ) == significant(trainer.state.best_map):
                trainer.best_weights = load_tensors(io.BytesIO(self.storage.read_bytes(self.layout.final_model)),
                                                    self.storage.uri(self.layout.final_model))
                return
        if trainer.state.best_epoch:
            log.warning("best-epoch weights of the resumed run not found: the final model will be the last epoch's")

    # ---- hooks called by the Trainer ---------------------------------------------------

    def epoch_end(self, trainer: Trainer, record: dict[str, Any], improved: bool) -> None:
        st = trainer.state
        prefix = self.layout.prefix
        ckpt.save(self.storage, ckpt.checkpoint_path(prefix, ckpt.LAST), self.checkpoint(trainer), self.tmp_dir)
        if improved:
            best = {"epoch": record["epoch"], "metrics": record, "model": trainer.best_weights,
                    "architecture": architecture(self.config.model_kwargs)}
            ckpt.save(self.storage, ckpt.checkpoint_path(prefix, ckpt.BEST), best, self.tmp_dir)
        write_json(self.storage, self.layout.metrics, metrics_document(st, None))
        self.write_meta(epochs_completed=st.epoch, stopped_early=st.stopped_early)  # what the API reads
        if self.config.save_intermediate:
            write_json(self.storage, self.layout.intermediate(record["epoch"]), record)
        self.wandb.log_epoch(record["epoch"], {f"{k}": v for k, v in record.items() if k != "epoch"})
        total = self.config.training_kwargs.num_epochs
        self.tracker.epoch_done(
            record["epoch"],
            record["epoch_seconds"],
            total_epochs=total,
            current_loss=record["train_loss"],
            best_loss=st.best_val_loss,
            current_map=record["mAP"],
            best_map=max(st.best_map, 0.0),
            metrics=best_metrics(st, self.run_uri),
            message=(
                f"Epoch {record['epoch']}/{total}: train loss {record['train_loss']:.4f}, "
                f"val mAP {record['mAP']:.4f}, rank-1 {record['rank1']:.3f}"
                + (" (best)" if improved else "")
                + (", early stopping" if st.stopped_early else "")
            ),
        )
        self.upload_log()

    def step_end(self, trainer: Trainer, epoch: int, step: int, steps: int | None, loss: torch.Tensor) -> None:
        now = time.monotonic()
        last = steps is not None and step >= steps  # validation follows: say so at once
        if now - self._last_step_report < STEP_REPORT_SECONDS and not last:
            return
        self._last_step_report = now
        total = self.config.training_kwargs.num_epochs
        of = f"/{steps}" if steps else ""
        message = (f"Epoch {epoch}/{total}: validating" if last
                   else f"Epoch {epoch}/{total}, step {step}{of}: batch loss {float(loss):.4f}")
        if self.workers_warning:  # on every step report: the reason this is slow
            message += f"\nWarning: {self.workers_warning}"
        self.tracker.step(epoch, step, steps, trainer.state.partial_seconds, message=message)

    def preempted(self, trainer: Trainer) -> None:
        st = trainer.state
        path = ckpt.checkpoint_path(self.layout.prefix, ckpt.LAST)
        ckpt.save(self.storage, path, self.checkpoint(trainer), self.tmp_dir)
        where = f"epoch {st.epoch + 1}, step {st.step}" if st.step else f"the end of epoch {st.epoch}"
        if self.options.stop_is_cancel():
            message = (f"Cancelled on request: checkpoint at {where} saved to {self.storage.uri(path)}; "
                       "resubmitting with the same custom_name resumes from it")
        else:
            message = (f"Stopped (preemption or cancel): checkpoint at {where} saved to {self.storage.uri(path)}; "
                       "a retry resumes from it")
        log.warning("%s", message)
        self.tracker.update(message=message)

    # ---- the run -----------------------------------------------------------------------

    def run(self) -> JobResult:
        cfg, tk = self.config, self.config.training_kwargs
        self.tracker.update(status=Phase.running, total_epochs=tk.num_epochs, message="Starting")
        self.claim_run()
        write_json(self.storage, self.layout.config, cfg.model_dump(mode="json"))
        self.write_meta()
        device = pick_device(self.options.device)
        dataset_dirs = self.sync()
        if self.options.stop.is_set():  # stopped before any training: nothing to checkpoint
            what = "Cancelled on request" if self.options.stop_is_cancel() else "Stopped (preemption or cancel)"
            message = f"{what} before training started: no checkpoint; a rerun starts from the beginning"
            log.warning("%s", message)
            self.tracker.update(message=message)
            return JobResult("preempted", self.run_uri, None, None)
        train_loader, val_loader, data_summary = self.loaders(dataset_dirs, device)
        seed_everything(tk.seed)
        trainer = Trainer(build_model(cfg.model_kwargs), cfg, device, train_loader, val_loader, self.options.stop,
                          num_classes=data_summary["train"]["players"], val_kits=self.val_kits)
        source = self.start_model(trainer)
        log.info("model weights: %s", source.describe())
        self.write_meta(init_source=source.as_dict(), device=str(device), data=data_summary,
                        resumed_at_epoch=trainer.state.epoch if source.kind == "checkpoint" else None,
                        epochs_completed=trainer.state.epoch, stopped_early=trainer.state.stopped_early)
        self.tracker.update(
            message=f"Training on {device} from {source.describe()}"
            + (f"\nWarning: {self.workers_warning}" if self.workers_warning else ""),
            current_epoch=trainer.state.epoch,
            metrics=best_metrics(trainer.state, self.run_uri),
        )
        self.wandb.start(
            self.options.run_name, cfg.wandb_tags, cfg.model_dump(mode="json"), self.work_dir,
            run_id=trainer.state.wandb_id,
        )
        trainer.state.wandb_id = self.wandb.run_id or trainer.state.wandb_id
        outcome = trainer.fit(self)
        if outcome == "preempted":
            self.write_meta(status="preempted")
            self.wandb.close_quietly(exit_code=1)
            self.upload_wandb_files()  # this pod's local files do not outlive it
            return JobResult(outcome, self.run_uri, best_metrics(trainer.state, self.run_uri), source)
        metrics = self.finalize(trainer, outcome)
        return JobResult(outcome, self.run_uri, metrics, source)

    def finalize(self, trainer: Trainer, outcome: Outcome) -> Metrics | None:
        cfg, st = self.config, trainer.state
        self.tracker.update(message="Writing the final model")
        model = trainer.best_model()
        files = self.work_dir / "final"
        files.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), files / "model.pt")
        self.storage.upload_file(files / "model.pt", self.layout.final_model)
        model_uri = self.storage.uri(self.layout.final_model)
        torchscript_error = None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated, still loadable in C++
                torch.jit.script(model).save(str(files / "model.torchscript.pt"))
            self.storage.upload_file(files / "model.torchscript.pt", self.layout.final_torchscript)
        except Exception as exc:  # the state_dict above is the primary output
            torchscript_error = str(exc)
            log.error("TorchScript export failed (the state_dict is saved): %s", exc)
        metrics = best_metrics(st, self.run_uri, model_uri)
        finished = now_rfc3339()
        write_json(self.storage, self.layout.final_meta, {
            "architecture": architecture(cfg.model_kwargs),
            "model_kwargs": cfg.model_kwargs.model_dump(mode="json"),
            "input_size": list(INPUT_SIZE),
            "normalization": {"mean": IMAGENET_MEAN, "std": IMAGENET_STD},
            "run_name": self.options.run_name,
            "best_epoch": st.best_epoch or None,
            "metrics": None if metrics is None else metrics.model_dump(mode="json"),
            "completed_at": finished,
        })
        write_json(self.storage, self.layout.metrics, metrics_document(st, metrics))
        if not cfg.save_intermediate:
            best = ckpt.checkpoint_path(self.layout.prefix, ckpt.BEST)
            if self.storage.exists(best):
                self.storage.delete(best)
        summary = {} if metrics is None else {
            k: v for k, v in metrics.model_dump().items() if k not in ("model_uri", "run_uri")
        }
        self.wandb.finish(summary, files / "model.pt", artifact_name(cfg.tenant_id, self.options.run_name))
        self.upload_wandb_files()
        self.write_meta(status=outcome, finished_at=finished, torchscript_error=torchscript_error,
                        epochs_completed=st.epoch, stopped_early=st.stopped_early)
        message = (
            f"Training {'stopped early' if outcome == 'early_stopped' else 'completed'} after {st.epoch} epochs: "
            + (f"best val mAP {metrics.mAP:.4f} (epoch {metrics.best_epoch}); " if metrics else "")
            + f"model at {model_uri}"
        )
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

"""The training loop: epochs of triplet training, validation, LR schedule, early stopping.

One :class:`Trainer` owns the model, Adam, ReduceLROnPlateau and the loop state
(:class:`~laxai_trainer.reid.engine.checkpoint.TrainState`). Storage, wandb and progress are
the caller's business, reached through :class:`EpochHooks`.

- ``batch_hard`` (default): P×K batches from the PK sampler, each image embedded
  once, batch-hard triplet loss. ``random``: (anchor, positive, negative) batches,
  the three embedded in one forward pass, plain triplet loss.
- The margin follows :func:`~laxai_trainer.reid.engine.schedules.margin_schedule` each epoch.
- After each epoch: validation (recall@1/5/10, mAP, val loss), then
  ReduceLROnPlateau and early stopping both on val mAP (higher is better).
- Recipe options: ``triplet_loss`` (hard/soft margin), an identity loss
  (``id_loss_weight``, ``label_smoothing``; its classifier is training-only, kept in the
  checkpoint, not in the model), ``model_kwargs.bnneck``, and ``warmup_epochs``
  (per-step linear LR ramp; ReduceLROnPlateau counts from the end of it).
- CUDA: bf16 autocast (training only; validation embeds in float32) and channels_last;
  CPU: float32, unchanged. No per-step host sync: the loss sum stays on the device until
  the epoch ends or a stop request.
- A stop request (SIGTERM) is honoured after the current step: the hooks write a
  mid-epoch checkpoint and :meth:`Trainer.fit` returns ``"preempted"``.
"""

from __future__ import annotations

import copy
import logging
import random
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, Literal, Protocol

import numpy as np
import torch

from laxai_trainer.config import TrainingConfig
from laxai_trainer.errors import ConfigError
from laxai_trainer.reid.engine.checkpoint import (
    TrainState,
    best_checkpoint,
    build_payload,
    capture_rng,
    restore,
    restore_rng,
)
from laxai_trainer.reid.engine.schedules import margin_schedule, warmup_factor
from laxai_trainer.reid.losses.identity import identity_loss
from laxai_trainer.reid.losses.triplet import batch_hard_triplet_loss, triplet_margin_loss
from laxai_trainer.reid.metrics.evaluate import EvalResult, evaluate
from laxai_trainer.reid.models.model import architecture

log = logging.getLogger(__name__)

Outcome = Literal["completed", "early_stopped", "preempted"]
#: Settings held in the optimizer/scheduler state: on resume the config's value replaces the
#: checkpoint's when they differ (Trainer.apply_hyperparameters).
RESUME_HYPERPARAMETERS = ("learning_rate", "weight_decay", "lr_scheduler_factor", "lr_scheduler_patience",
                          "lr_scheduler_min_lr")
#: ReduceLROnPlateau and early stopping count an epoch as better only above this mAP gain.
MAP_MIN_DELTA = 1e-6


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA (no loss scaling needed), none on CPU."""
    return torch.bfloat16 if device.type == "cuda" else None


class EpochHooks(Protocol):
    def epoch_end(self, trainer: Trainer, record: dict[str, Any], improved: bool) -> None: ...

    def step_end(self, trainer: Trainer, epoch: int, step: int, steps: int | None, loss: torch.Tensor) -> None:
        """``loss``: the step's 0-d loss on the device; reading it (float, format) waits for the device."""

    def preempted(self, trainer: Trainer) -> None: ...


def _len_or_none(obj: Any) -> int | None:
    try:
        return len(obj)
    except TypeError:
        return None


class Trainer:
    def __init__(
        self,
        model: torch.nn.Module,
        config: TrainingConfig,
        device: torch.device,
        train_loader: Iterable,
        val_loader: Iterable,
        stop: threading.Event | None = None,
        num_classes: int | None = None,
        val_kits: torch.Tensor | None = None,
    ) -> None:
        tk = config.training_kwargs
        self.config = config
        self.device = device
        self.channels_last = device.type == "cuda"
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed 120×80 input: let cuDNN pick its fastest kernels
        self.amp = autocast_dtype(device)
        self.model = model.to(device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.train_loader = train_loader
        self.val_loader = val_loader
        self.stop = stop or threading.Event()
        #: Kit id per val image (-1: unknown), for the same-kit metrics; None without kit info.
        self.val_kits = val_kits
        # The identity classifier is training-only: not part of the saved model (its size is
        # the number of training players), but of the checkpoint so a resume continues it.
        self.id_head: torch.nn.Module | None = None
        params = list(self.model.parameters())
        if tk.id_loss_weight > 0:
            if not num_classes or num_classes < 2:
                raise ValueError("id_loss_weight > 0 needs num_classes (training players) >= 2")
            self.id_head = torch.nn.Linear(config.model_kwargs.embedding_dim, num_classes, bias=False).to(device)
            params += list(self.id_head.parameters())
        self.optimizer = torch.optim.Adam(params, lr=tk.learning_rate, weight_decay=tk.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer,
            mode="max",
            factor=tk.lr_scheduler_factor,
            patience=tk.lr_scheduler_patience,
            min_lr=tk.lr_scheduler_min_lr,
            threshold=MAP_MIN_DELTA,
            threshold_mode="abs",
        )
        self.state = TrainState(margin=tk.margin)
        self.best_weights: dict[str, torch.Tensor] | None = None
        # RNG state at the start of the running epoch: a mid-epoch resume replays the
        # sampler's draw from it, then skips the batches already trained.
        self._epoch_start_rng: dict[str, Any] | None = None
        # RNG state where the next epoch (or the rest of this one) starts: saved in the
        # checkpoint, and restored after the epoch hooks so that whatever they do
        # (storage, wandb) cannot change the run — a resumed run continues identically.
        self._resume_rng: dict[str, Any] | None = None

    # ---- state -------------------------------------------------------------------------

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def checkpoint_payload(self) -> dict[str, Any]:
        rng = self._resume_rng if self._resume_rng is not None else capture_rng()
        payload = build_payload(
            self.model, self.optimizer, self.scheduler, self.state, architecture(self.config.model_kwargs), rng
        )
        if self.state.step and self._epoch_start_rng is not None:
            payload["epoch_start_rng"] = self._epoch_start_rng
        payload["hyperparameters"] = self.config.training_kwargs.model_dump(mode="json")
        if self.id_head is not None:
            payload["id_head"] = self.id_head.state_dict()
        return payload

    def best_checkpoint(self, record: dict[str, Any]) -> dict[str, Any]:
        """``best.pt`` of the epoch ``record`` that just improved (after :meth:`end_epoch`)."""
        return best_checkpoint(record, self.best_weights, architecture(self.config.model_kwargs))

    def load_checkpoint(self, payload: dict[str, Any]) -> list[str]:
        """Restore the checkpoint; returns the hyperparameters that differ from it (now applied)."""
        expected = architecture(self.config.model_kwargs)
        if payload.get("architecture") != expected:
            raise ConfigError(
                f"resume_from_checkpoint: the run's checkpoint has architecture {payload.get('architecture')}, "
                f"the config asks for {expected} (model_kwargs); use another custom_name or "
                "resume_from_checkpoint: false"
            )
        head = payload.get("id_head")
        if self.id_head is not None and head is not None and head["weight"].shape != self.id_head.weight.shape:
            raise ConfigError(
                f"resume_from_checkpoint: the run's checkpoint classifies {head['weight'].shape[0]} training "
                f"players, the data now has {self.id_head.out_features} (id_loss_weight); use another "
                "custom_name or resume_from_checkpoint: false"
            )
        self.state = restore(payload, self.model, self.optimizer, self.scheduler)
        if self.id_head is not None and head is not None:
            self.id_head.load_state_dict(head)
        self._epoch_start_rng = payload.get("epoch_start_rng")
        self._resume_rng = payload["rng"]
        return self.apply_hyperparameters(payload.get("hyperparameters") or {})

    def apply_hyperparameters(self, saved: dict[str, Any]) -> list[str]:
        """Put the config's optimizer and scheduler settings over the restored state where they
        changed since the checkpoint (the restored state carries the old ones). Unchanged ones
        keep the restored state: its learning rate may be the scheduler's reduction."""
        tk = self.config.training_kwargs
        changed = {name: (saved[name], getattr(tk, name)) for name in RESUME_HYPERPARAMETERS
                   if name in saved and saved[name] != getattr(tk, name)}
        groups = self.optimizer.param_groups
        for name, (_, value) in changed.items():
            if name == "learning_rate":
                for group in groups:
                    group["lr"] = value
            elif name == "weight_decay":
                for group in groups:
                    group["weight_decay"] = value
            elif name == "lr_scheduler_min_lr":
                self.scheduler.min_lrs = [value] * len(groups)
            else:  # lr_scheduler_factor, lr_scheduler_patience
                setattr(self.scheduler, name.removeprefix("lr_scheduler_"), value)
        return [f"{name} {old} -> {new}" for name, (old, new) in changed.items()]

    def snapshot_best(self) -> None:
        self.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}

    # ---- steps -------------------------------------------------------------------------

    def _images(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    def _embed_train(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Triplet embeddings, and identity features when the identity loss or a BN-neck needs them."""
        if self.id_head is None and not self.config.model_kwargs.bnneck:
            return self.model(images), None
        return self.model.forward_train(images)

    def _id_term(self, features: torch.Tensor | None, labels: torch.Tensor) -> torch.Tensor | float:
        tk = self.config.training_kwargs
        if self.id_head is None or features is None:
            return 0.0
        return tk.id_loss_weight * identity_loss(self.id_head(features), labels, tk.label_smoothing)

    def _loss(self, batch: Any, margin: float) -> tuple[torch.Tensor, int]:
        """Loss of one batch and the number of images embedded."""
        kind = self.config.training_kwargs.triplet_loss
        with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            if self.config.training_kwargs.triplet_mining == "random":
                anchor, positive, negative = (self._images(t) for t in batch[:3])
                n = anchor.shape[0]
                emb, feats = self._embed_train(torch.cat([anchor, positive, negative]))
                loss = triplet_margin_loss(emb[:n], emb[n : 2 * n], emb[2 * n :], margin, kind)
                if feats is not None:  # anchors and negatives carry their labels
                    labels = torch.cat([batch[3], batch[4]]).to(self.device, non_blocking=True)
                    loss = loss + self._id_term(torch.cat([feats[:n], feats[2 * n :]]), labels)
                return loss, 3 * n
            images, labels = self._images(batch[0]), batch[1].to(self.device, non_blocking=True)
            emb, feats = self._embed_train(images)
            loss = batch_hard_triplet_loss(emb, labels, margin, kind) + self._id_term(feats, labels)
            return loss, images.shape[0]

    def _warm_up(self, epoch: int, step: int, steps: int | None) -> None:
        warmup = self.config.training_kwargs.warmup_epochs
        if warmup and epoch <= warmup:
            lr = self.config.training_kwargs.learning_rate * warmup_factor(epoch, step, steps, warmup)
            for group in self.optimizer.param_groups:
                group["lr"] = lr

    def _batches(self, epoch: int) -> Iterator[Any]:
        """This epoch's batches, skipping those a mid-epoch checkpoint already trained."""
        for obj in (self.train_loader, getattr(self.train_loader, "batch_sampler", None),
                    getattr(self.train_loader, "sampler", None)):
            if obj is not None and hasattr(obj, "set_epoch"):
                obj.set_epoch(epoch)
        skip = self.state.step
        if skip and self._epoch_start_rng is not None:
            restore_rng(self._epoch_start_rng)  # the sampler draws this epoch's order as before
        else:
            self._epoch_start_rng = capture_rng()
        iterator = iter(self.train_loader)
        for _ in range(skip):
            next(iterator, None)
        if skip and self._resume_rng is not None:
            restore_rng(self._resume_rng)  # augmentations continue exactly where they stopped
            log.info("resuming epoch %d at step %d", epoch, skip)
        return iterator

    # ---- epochs ------------------------------------------------------------------------

    def train_epoch(self, epoch: int, hooks: EpochHooks) -> bool:
        """Train one epoch (1-based); False when a stop request interrupted it."""
        tk = self.config.training_kwargs
        st = self.state
        st.margin = margin_schedule(tk.margin, tk.margin_decay_rate, epoch - 1, st.margin, tk.margin_change_threshold)
        self.model.train()
        steps = _len_or_none(self.train_loader)
        t0 = time.perf_counter() - st.partial_seconds
        # The loss stays on the device: reading it each step would wait for the GPU every step.
        # float64 and continued from the checkpoint's sum: the same sum as an uninterrupted epoch.
        loss_sum = torch.tensor(st.partial_loss_sum, dtype=torch.float64, device=self.device)
        for batch in self._batches(epoch):
            self._warm_up(epoch, st.step + 1, steps)
            loss, n_images = self._loss(batch, st.margin)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            value = loss.detach()
            loss_sum += value
            st.step += 1
            st.partial_batches += 1
            st.partial_images += n_images
            st.partial_seconds = time.perf_counter() - t0
            if not self.stop.is_set():
                hooks.step_end(self, epoch, st.step, steps, value)
            if self.stop.is_set():
                st.partial_loss_sum = float(loss_sum)
                st.partial_seconds = time.perf_counter() - t0
                self._resume_rng = capture_rng()
                return False
        st.partial_loss_sum = float(loss_sum)
        st.partial_seconds = time.perf_counter() - t0  # after the read: the device work is done
        if st.partial_batches == 0:
            raise RuntimeError(f"epoch {epoch}: the training loader produced no batch")
        return True

    def validate(self) -> EvalResult:
        return evaluate(
            self.model,
            self.val_loader,
            self.device,
            self.state.margin,
            self.config.training_kwargs.triplet_mining,
            channels_last=self.channels_last,
            kits=self.val_kits,
        )

    def end_epoch(self, epoch: int, result: EvalResult) -> tuple[dict[str, Any], bool]:
        """Scheduler, early stopping and the epoch record, from the validation result."""
        st = self.state
        tk = self.config.training_kwargs
        record = {
            "epoch": epoch,
            "train_loss": st.partial_loss_sum / max(st.partial_batches, 1),
            "val_loss": result.val_loss,
            "rank1": result.rank1,
            "rank5": result.rank5,
            "rank10": result.rank10,
            "mAP": result.mAP,
            "lr": self.lr,
            "margin": st.margin,
            "images_per_second": st.partial_images / max(st.partial_seconds, 1e-9),
            "train_images": st.partial_images,
            "train_seconds": st.partial_seconds,
            "val_queries": result.queries,
        }
        if result.same_kit_queries:
            record.update(same_kit_rank1=result.same_kit_rank1, same_kit_mAP=result.same_kit_mAP,
                          same_kit_queries=result.same_kit_queries)
        improved = result.mAP > st.best_map + MAP_MIN_DELTA
        if improved:
            st.best_map, st.best_epoch, st.epochs_without_improvement = result.mAP, epoch, 0
            self.snapshot_best()
        else:
            st.epochs_without_improvement += 1
        if st.best_val_loss is None or result.val_loss < st.best_val_loss:
            st.best_val_loss = result.val_loss
        if epoch > tk.warmup_epochs:  # the plateau counter starts once the warm-up is over
            self.scheduler.step(result.mAP)
        if self.lr < record["lr"]:
            log.info("epoch %d: val mAP did not improve, learning rate %.3g -> %.3g", epoch, record["lr"], self.lr)
        if st.epochs_without_improvement >= tk.early_stopping_patience:
            st.stopped_early = True
            log.info(
                "early stopping after epoch %d: no val mAP gain for %d epochs (best %.4f at epoch %d)",
                epoch, st.epochs_without_improvement, st.best_map, st.best_epoch,
            )
        st.epoch = epoch
        st.history.append(record)
        st.reset_partial()
        return record, improved

    def fit(self, hooks: EpochHooks) -> Outcome:
        """Train until num_epochs, early stopping, or a stop request."""
        total = self.config.training_kwargs.num_epochs
        if self._resume_rng is not None and not self.state.step:
            restore_rng(self._resume_rng)  # resumed at an epoch boundary
        while self.state.epoch < total and not self.state.stopped_early:
            epoch = self.state.epoch + 1
            started = time.perf_counter()
            if not self.train_epoch(epoch, hooks):
                hooks.preempted(self)
                return "preempted"
            record, improved = self.end_epoch(epoch, self.validate())
            record["epoch_seconds"] = time.perf_counter() - started  # training + validation
            self._resume_rng = capture_rng()
            log.info(
                "epoch %d/%d: train loss %.4f, val loss %.4f, rank-1 %.3f, rank-5 %.3f, rank-10 %.3f, "
                "mAP %.4f, lr %.3g, margin %.4f, %.1f images/s",
                epoch, total, record["train_loss"], record["val_loss"], record["rank1"], record["rank5"],
                record["rank10"], record["mAP"], record["lr"], record["margin"], record["images_per_second"],
            )
            hooks.epoch_end(self, record, improved)
            restore_rng(self._resume_rng)
            if self.stop.is_set() and self.state.epoch < total and not self.state.stopped_early:
                hooks.preempted(self)
                return "preempted"
        return "early_stopped" if self.state.stopped_early else "completed"

    def best_model(self) -> torch.nn.Module:
        """A CPU float32 copy of the model with the best epoch's weights, in eval mode."""
        model = copy.deepcopy(self.model).to("cpu", memory_format=torch.contiguous_format).float()
        if self.best_weights is not None:
            model.load_state_dict(self.best_weights)
        return model.eval()

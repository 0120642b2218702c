"""Weights & Biases logging that can never fail a training job.

- run name = the run name, tags = ``wandb_tags``, config = the resolved config;
- one ``log`` per epoch (step = epoch), the final metrics in the summary, the final
  model as a ``model`` artifact;
- mode: ``WANDB_MODE`` when set (wandb's own variable: online/offline/disabled),
  else ``online`` with ``WANDB_API_KEY`` and ``offline`` without. Offline files go to
  the run's local work folder and are uploaded to ``{run}/wandb/`` in storage, so
  ``wandb sync`` can publish them later;
- the wandb run id is kept in the checkpoint: a resumed run appends to the same
  wandb run;
- project ``WANDB_PROJECT`` (default ``laxai-reid``), entity ``WANDB_ENTITY``.

Every wandb call is guarded: an exception is logged and wandb is switched off for
the rest of the run; training goes on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_PROJECT = "laxai-reid"


def wandb_mode(env: Mapping[str, str] | None = None) -> str:
    """online, offline or disabled, from the environment (see module docstring)."""
    env = os.environ if env is None else env
    mode = env.get("WANDB_MODE", "").strip().lower()
    if mode in {"online", "offline", "disabled"}:
        return mode
    if mode == "dryrun":
        return "offline"
    return "online" if env.get("WANDB_API_KEY") else "offline"


class WandbRun:
    """A guarded wandb run; all methods are no-ops once wandb has failed or is disabled."""

    def __init__(self) -> None:
        self.run: Any = None
        self.mode = "disabled"

    @property
    def active(self) -> bool:
        return self.run is not None

    @property
    def run_id(self) -> str | None:
        return None if self.run is None else self.run.id

    def _guard(self, what: str, exc: BaseException) -> None:
        log.warning("wandb %s failed, continuing without wandb: %s", what, exc)
        self.close_quietly()

    def start(
        self,
        run_name: str,
        tags: list[str],
        config: dict[str, Any],
        work_dir: Path,
        run_id: str | None = None,
    ) -> None:
        self.mode = wandb_mode()
        if self.mode == "disabled":
            log.info("wandb disabled (WANDB_MODE=disabled)")
            return
        try:
            import wandb

            work_dir.mkdir(parents=True, exist_ok=True)
            self.run = wandb.init(
                project=os.environ.get("WANDB_PROJECT", DEFAULT_PROJECT),
                entity=os.environ.get("WANDB_ENTITY") or None,
                name=run_name,
                tags=list(tags),
                config=config,
                dir=str(work_dir),
                mode=self.mode,
                id=run_id,
                resume="allow" if run_id else None,
                settings=wandb.Settings(console="off", silent=True),
            )
            log.info("wandb run %s (%s mode, id %s)", run_name, self.mode, self.run.id)
        except Exception as exc:
            self._guard("init", exc)

    def log_epoch(self, epoch: int, metrics: Mapping[str, float | int | None]) -> None:
        if self.run is None:
            return
        try:
            self.run.log({k: v for k, v in metrics.items() if v is not None}, step=epoch)
        except Exception as exc:
            self._guard("log", exc)

    def finish(self, summary: Mapping[str, Any], model_path: Path | None, artifact_name: str) -> None:
        """Final summary, the model artifact, then close the run."""
        if self.run is None:
            return
        try:
            import wandb

            for key, value in summary.items():
                if value is not None:
                    self.run.summary[key] = value
            if model_path is not None and model_path.exists():
                artifact = wandb.Artifact(artifact_name, type="model", metadata=dict(summary))
                artifact.add_file(str(model_path))
                self.run.log_artifact(artifact, aliases=["latest"])
            self.run.finish()
        except Exception as exc:
            self._guard("finish", exc)
        finally:
            self.run = None

    def close_quietly(self, exit_code: int = 1) -> None:
        run, self.run = self.run, None
        if run is None:
            return
        try:
            run.finish(exit_code=exit_code)
        except Exception as exc:  # already failing: just say so
            log.debug("wandb finish after an error failed: %s", exc)

    @staticmethod
    def offline_files(work_dir: Path) -> list[Path]:
        """Files of offline runs under ``work_dir`` (to upload with the run outputs)."""
        root = work_dir / "wandb"
        if not root.is_dir():
            return []
        return sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def artifact_name(tenant_id: str, run_name: str) -> str:
    """A wandb artifact name (letters, digits, '-', '_', '.') for the run's model."""
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in f"{tenant_id}-{run_name}")
    return f"{safe}-model"

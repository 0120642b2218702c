"""Model quality: the default recipe vs the seed's plain triplet recipe on game-like data.

Run from the repository root::

    python -m bench.model_quality [--epochs 3] [--frames 3] [--players 12] [--val-players 4]
        [--images 6] [--embedding-dim 256] [--batch-size 32] [--device auto|cpu|cuda]
        [--recipe NAME=JSON ...] [--seed 0]

The defaults are the README quickstart's run: its dataset (``laxai-train synth`` defaults
but 12 players per frame), the seed request's batch size and embedding size, 3 epochs.
Generates match-mode synthetic data (``laxai_trainer.reid.data.synth``: two teams per frame in
shared kits, occlusion, blur, partial crops; val players never trained on), then
trains each recipe from the same random init for the same epochs with the real
loaders and :class:`~laxai_trainer.reid.engine.trainer.Trainer`, and prints per recipe the best
epoch's val rank-1, mAP, same-kit rank-1/mAP (queries whose nearest wrong match is a
teammate), epochs and seconds. Recipes:

- ``default``: ``TrainingKwargs()``/``ModelKwargs()`` defaults (the measured choice,
  docs/architecture.md);
- ``plain``: the seed's loop: ``triplet_mining: random``, hard-margin triplet loss only,
  no BN-neck, no warm-up;
- ``--recipe NAME=JSON``: more, as training_kwargs overrides (``bnneck`` goes to
  model_kwargs), e.g. ``--recipe 'id={"id_loss_weight": 1.0, "bnneck": true}'``.

The last line: ``model quality: default rank-1 R mAP M vs plain rank-1 R0 mAP M0 after E epochs``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from laxai_trainer.config import TrainingConfig
from laxai_trainer.reid.data import loaders as data
from laxai_trainer.reid.data.kits import kit_per_image
from laxai_trainer.reid.data.synth import generate
from laxai_trainer.reid.engine.trainer import Trainer, seed_everything
from laxai_trainer.reid.models.model import build_model

TENANT = "bench"
PLAIN = {"triplet_mining": "random", "triplet_loss": "hard_margin", "id_loss_weight": 0.0, "warmup_epochs": 0,
         "bnneck": False}
MODEL_KEYS = {"bnneck"}


class _Quiet:
    def epoch_end(self, trainer: Trainer, record: dict[str, Any], improved: bool) -> None:
        kit = record.get("same_kit_rank1")
        print(f"    epoch {record['epoch']}: rank-1 {record['rank1']:.3f} mAP {record['mAP']:.3f}"
              + (f" same-kit rank-1 {kit:.3f}" if kit is not None else ""), flush=True)

    def step_end(self, *args: Any) -> None:
        pass

    def preempted(self, trainer: Trainer) -> None:
        pass


def run_recipe(name: str, overrides: dict[str, Any], dirs: list[Path], args: argparse.Namespace,
               device: torch.device) -> dict[str, Any]:
    model_kwargs = {"embedding_dim": args.embedding_dim, **{k: v for k, v in overrides.items() if k in MODEL_KEYS}}
    training_kwargs = {
        "num_epochs": args.epochs, "batch_size": args.batch_size, "num_workers": args.num_workers,
        "seed": args.seed, "early_stopping_patience": max(args.epochs, 1),
        **{k: v for k, v in overrides.items() if k not in MODEL_KEYS},
    }
    cfg = TrainingConfig(tenant_id=TENANT, training_kwargs=training_kwargs, model_kwargs=model_kwargs)
    tk = cfg.training_kwargs
    train = data.scan_split(dirs, "train", tk.min_images_per_player, TENANT)
    val = data.scan_split(dirs, "val", tk.min_images_per_player, TENANT)
    seed_everything(tk.seed)
    trainer = Trainer(
        build_model(cfg.model_kwargs), cfg, device, data.build_train_loader(train, tk, device, tk.seed),
        data.build_val_loader(val, tk, device), num_classes=len(train.players), val_kits=kit_per_image(val, dirs),
    )
    print(f"  {name}: {json.dumps(overrides, sort_keys=True)}", flush=True)
    started = time.perf_counter()
    trainer.fit(_Quiet())
    seconds = time.perf_counter() - started
    best = next(r for r in trainer.state.history if r["epoch"] == trainer.state.best_epoch)
    return {"recipe": name, "rank1": best["rank1"], "mAP": best["mAP"],
            "same_kit_rank1": best.get("same_kit_rank1"), "same_kit_mAP": best.get("same_kit_mAP"),
            "epochs": trainer.state.epoch, "best_epoch": trainer.state.best_epoch, "seconds": seconds}


def _fmt(value: float | None) -> str:
    return "   -  " if value is None else f"{value:6.3f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--players", type=int, default=12, help="train players per frame")
    parser.add_argument("--val-players", type=int, default=4, help="val players per frame (never trained on)")
    parser.add_argument("--images", type=int, default=6, help="crops per player")
    parser.add_argument("--embedding-dim", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--recipe", action="append", default=[], metavar="NAME=JSON")
    parser.add_argument("--only", action="append", default=[], metavar="NAME", help="run only these recipes")
    args = parser.parse_args(argv)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    recipes: dict[str, dict[str, Any]] = {"default": {}, "plain": dict(PLAIN)}
    for spec in args.recipe:
        name, _, body = spec.partition("=")
        recipes[name] = json.loads(body)
    if args.only:
        recipes = {k: v for k, v in recipes.items() if k in args.only}
    print(f"model quality on {device} ({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads): {args.frames} frames x "
          f"({args.players} train + {args.val_players} val players) x {args.images} crops, match mode, "
          f"{args.epochs} epochs", flush=True)
    with tempfile.TemporaryDirectory(prefix="laxai-quality-") as tmp:
        summary = generate(tmp, TENANT, players=args.players, frames=args.frames, images_per_player=args.images,
                           val_players=args.val_players, seed=args.seed)
        dirs = [Path(tmp) / TENANT / "datasets" / d for d in summary.dataset_ids]
        results = [run_recipe(name, overrides, dirs, args, device) for name, overrides in recipes.items()]
    print(f"{'recipe':<14}{'rank-1':>8}{'mAP':>8}{'same-kit rank-1':>17}{'same-kit mAP':>14}{'epochs':>8}{'seconds':>9}")
    for r in results:
        print(f"{r['recipe']:<14}{_fmt(r['rank1']):>8}{_fmt(r['mAP']):>8}{_fmt(r['same_kit_rank1']):>17}"
              f"{_fmt(r['same_kit_mAP']):>14}{r['epochs']:>8}{r['seconds']:>9.1f}")
    by = {r["recipe"]: r for r in results}
    if "default" in by and "plain" in by:
        d, p = by["default"], by["plain"]
        print(f"model quality: default rank-1 {d['rank1']:.3f} mAP {d['mAP']:.3f} vs plain rank-1 {p['rank1']:.3f} "
              f"mAP {p['mAP']:.3f} after {args.epochs} epochs")


if __name__ == "__main__":
    main()

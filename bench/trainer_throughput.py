"""Trainer throughput: batch-hard vs random-triplet steps on the same model and data.

Run from the repository root::

    python -m bench.trainer_throughput [--device auto|cpu|cuda] [--steps 5] [--batch-size 32]
        [--images-per-player 4] [--num-workers 2] [--embedding-dim 128] [--sync-files 600]
        [--sync-latency-ms 0 10] [--no-sync]

Generates synthetic 120×80 crops (``laxai_trainer.reid.data.synth``), builds the real loaders
(``laxai_trainer.reid.data.loaders``) and :class:`~laxai_trainer.reid.engine.trainer.Trainer` (bf16 autocast and
channels_last on CUDA), then for each mining mode measures:

- time to first step: loader + model construction, first batch, first optimizer step;
- steady-state steps/s, embedded images/s, and anchors/s (batch-hard embeds B images
  and every one is an anchor; random embeds 3B images for B triplets);
- peak GPU memory on CUDA.

Then the data-sync figures of ``bench/data_sync.py`` (fake-gcs-server on loopback):
concurrent (transfer_manager) vs one-by-one downloads. Prints a table.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from laxai_trainer.config import TrainingConfig
from laxai_trainer.reid.data import loaders as data
from laxai_trainer.reid.data.synth import generate
from laxai_trainer.reid.engine.trainer import Trainer, seed_everything
from laxai_trainer.reid.models.model import build_model

TENANT = "bench"


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_mode(mode: str, dataset_dirs: list[Path], args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    cfg = TrainingConfig(
        tenant_id=TENANT,
        training_kwargs={
            "batch_size": args.batch_size,
            "images_per_player": args.images_per_player,
            "num_workers": args.num_workers,
            "triplet_mining": mode,
            "seed": 0,
        },
        model_kwargs={"embedding_dim": args.embedding_dim},
    )
    tk = cfg.training_kwargs
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    index = data.scan_split(dataset_dirs, "train", tk.min_images_per_player, TENANT)
    loader = data.build_train_loader(index, tk, device, tk.seed)
    seed_everything(tk.seed)
    trainer = Trainer(build_model(cfg.model_kwargs), cfg, device, loader, [], num_classes=len(index.players))
    trainer.model.train()
    steps_needed = args.steps + 1
    epoch = 0
    times: list[float] = []
    images = anchors = 0
    first_step = None
    steady_start = started
    while len(times) < steps_needed:
        epoch += 1
        loader.batch_sampler.set_epoch(epoch)
        for batch in loader:
            t0 = time.perf_counter()
            loss, n_images = trainer._loss(batch, tk.margin)
            trainer.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            trainer.optimizer.step()
            sync(device)
            now = time.perf_counter()
            if first_step is None:
                first_step = now - started
                steady_start = now  # steady state: from the end of the first step on
            else:
                images += n_images
                anchors += n_images if mode == "batch_hard" else n_images // 3
            times.append(now - t0)
            if len(times) >= steps_needed:
                break
    elapsed = time.perf_counter() - steady_start
    out = {
        "mode": mode,
        "time_to_first_step_s": first_step,
        "steps": args.steps,
        "steps_per_s": args.steps / elapsed,
        "images_per_s": images / elapsed,
        "anchors_per_s": anchors / elapsed,
        "compute_share": sum(times[1:]) / elapsed,  # the rest is waiting for data
    }
    if device.type == "cuda":
        out["peak_gpu_mem_gb"] = torch.cuda.max_memory_allocated() / 1e9
        try:
            out["gpu_utilization_pct"] = torch.cuda.utilization()
        except Exception:  # needs pynvml; optional
            pass
    return out


def print_table(rows: list[dict[str, Any]], device: torch.device, args: argparse.Namespace) -> None:
    amp = "bf16 autocast, channels_last" if device.type == "cuda" else "float32"
    name = torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"trainer throughput on {device} ({name}, {amp}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads)")
    print(f"  ResNet18+CBAM(layer2-4) -> {args.embedding_dim}-d, input 120x80, batch {args.batch_size} "
          f"(batch-hard: P={args.batch_size // args.images_per_player} x K={args.images_per_player}; "
          f"random: {args.batch_size} triplets), num_workers {args.num_workers}, {args.steps} timed steps")
    header = f"  {'mode':<11} {'first step s':>12} {'steps/s':>8} {'images/s':>9} {'anchors/s':>9} {'compute':>8}"
    extra = device.type == "cuda"
    if extra:
        header += f" {'peak GB':>8} {'GPU %':>6}"
    print(header)
    for r in rows:
        line = (f"  {r['mode']:<11} {r['time_to_first_step_s']:>12.2f} {r['steps_per_s']:>8.2f} "
                f"{r['images_per_s']:>9.1f} {r['anchors_per_s']:>9.1f} {r['compute_share']:>7.0%}")
        if extra:
            line += f" {r.get('peak_gpu_mem_gb', 0):>8.2f} {r.get('gpu_utilization_pct', float('nan')):>6}"
        print(line)
    if len(rows) == 2 and rows[1]["anchors_per_s"]:
        print(f"  batch-hard / random: {rows[0]['images_per_s'] / rows[1]['images_per_s']:.2f}x images/s, "
              f"{rows[0]['anchors_per_s'] / rows[1]['anchors_per_s']:.2f}x anchors/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per mode, after the first (default 5)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--images-per-player", type=int, default=4)
    parser.add_argument("--num-workers", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--embedding-dim", type=int, default=128)
    parser.add_argument("--players", type=int, default=16, help="synthetic train players per frame")
    parser.add_argument("--frames", type=int, default=2)
    parser.add_argument("--sync-files", type=int, default=600, help="crops for the data-sync benchmark")
    parser.add_argument("--sync-latency-ms", type=float, nargs="+", default=[0.0, 10.0])
    parser.add_argument("--no-sync", action="store_true", help="skip the data-sync benchmark")
    args = parser.parse_args()
    device = pick_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    work = Path(tempfile.mkdtemp(prefix="laxai-bench-train-"))
    try:
        generate(work, TENANT, players=args.players, frames=args.frames, images_per_player=8, val_players=2, seed=0)
        dirs = sorted((work / TENANT / "datasets").iterdir())
        rows = [bench_mode(mode, dirs, args, device) for mode in ("batch_hard", "random")]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(rows, device, args)

    if not args.no_sync:
        from bench import data_sync

        for latency in args.sync_latency_ms:
            print()
            data_sync.report(data_sync.run(files=args.sync_files, latency_ms=latency))


if __name__ == "__main__":
    main()

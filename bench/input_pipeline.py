"""Input pipeline: the old PIL path vs the crop cache + device augmentations, on the same crops.

Run from the repository root::

    python -m bench.input_pipeline [--device auto|cpu|cuda] [--players 16] [--frames 4]
        [--images 16] [--batch-size 64] [--images-per-player 4] [--seconds 2] [--repeats 3]
        [--steps 4] [--num-workers N] [--embedding-dim 512] [--data ROOT --tenant T]

Generates synthetic crops (``laxai_trainer.reid.data.synth``, 120×80 up to ~150×100, JPEG), or
reads the crops of tenant T under ROOT (the storage layout: ``ROOT/T/datasets/*/train/<player>/*.jpg``:
real crops, whose decode cost the old path pays per crop), then:

1. the one-off crop-cache build (``num_workers`` processes) and its images/s;
2. the input pipeline alone, per CPU core (``torch.set_num_threads(1)``, cache built):
   training batches of the old path (``build_train_loader``, PIL decode + torchvision v2
   per crop, num_workers 0) and of the new one (``DeviceTrainBatches`` on the CPU), as
   images per CPU-second of this process (wall-clock figures too);
3. with ``--device cuda``: the new path on the GPU (images/s, crops resident);
4. whole training steps (the default model, ``Trainer._loss`` + backward + Adam) fed by
   each path, images/s; on CUDA also GPU utilisation sampled (``torch.cuda.utilization()``
   every 50 ms) over the steady state, and peak device memory.

Per core means one thread for both paths (``torch.set_num_threads(1)``, PIL is single-threaded)
and images per CPU-second of this process (user + system time, so waiting on a busy machine
does not count, but sharing its caches and memory bandwidth does: the load average is
printed before and after). The two paths are measured in turn ``--repeats`` times,
``--seconds`` each; the figure of a path is its best run (as ``timeit``: the run least
disturbed by other processes), the median is printed beside it. Both paths produce the same batches: the trainer's own loader
and ``DeviceTrainBatches`` with the trainer's augmentations.

The last line is ``input pipeline per core: old X img/s, new Y img/s (Z.Zx)``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch

from bench.trainer_throughput import pick_device, sync
from laxai_trainer.config import TrainingConfig
from laxai_trainer.host_memory import keep_freed_memory
from laxai_trainer.reid.data import loaders as data
from laxai_trainer.reid.data.batches import DeviceTrainBatches
from laxai_trainer.reid.data.crop_cache import ensure_crop_cache, split_images
from laxai_trainer.reid.data.synth import generate
from laxai_trainer.reid.engine.trainer import Trainer, seed_everything
from laxai_trainer.reid.models.model import build_model

TENANT = "bench"


def config(args: argparse.Namespace, pipeline: str) -> TrainingConfig:
    return TrainingConfig(
        tenant_id=args.tenant,
        training_kwargs={"batch_size": args.batch_size, "images_per_player": args.images_per_player,
                         "num_workers": 0, "seed": 0, "input_pipeline": pipeline},
        model_kwargs={"embedding_dim": args.embedding_dim},
    )


def drain(loader: Any, seconds: float, device: torch.device) -> dict[str, float]:
    """Iterate epochs of batches for about ``seconds``: images per wall- and CPU-second."""
    images, epoch = 0, 0
    it = None
    wall0, cpu0 = time.perf_counter(), time.process_time()
    while time.perf_counter() - wall0 < seconds:
        if it is None:
            epoch += 1
            loader.batch_sampler.set_epoch(epoch) if hasattr(loader, "batch_sampler") else loader.set_epoch(epoch)
            it = iter(loader)
        batch = next(it, None)
        if batch is None:
            it = None
            continue
        images += sum(t.shape[0] for t in batch[:3] if t.dim() == 4)
    sync(device)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {"images": images, "per_wall_s": images / wall, "per_cpu_s": images / max(cpu, 1e-9)}


class UtilSampler(threading.Thread):
    def __init__(self, device: torch.device) -> None:
        super().__init__(daemon=True)
        self.device, self.samples, self.stop = device, [], threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            try:
                self.samples.append(torch.cuda.utilization(self.device))
            except Exception:  # no NVML: no samples
                return


def train_steps(loader: Any, cfg: TrainingConfig, device: torch.device, steps: int) -> dict[str, Any]:
    """Steady-state images/s of whole steps (after one warm-up step); GPU busy % on CUDA."""
    seed_everything(0)
    trainer = Trainer(build_model(cfg.model_kwargs), cfg, device, loader, [])
    trainer.model.train()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def batches():
        epoch = 0
        while True:
            epoch += 1
            loader.batch_sampler.set_epoch(epoch) if hasattr(loader, "batch_sampler") else loader.set_epoch(epoch)
            yield from loader

    def step(batch) -> int:
        loss, n = trainer._loss(batch, 0.4)
        trainer.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        trainer.optimizer.step()
        return n

    source = batches()
    step(next(source))
    sync(device)
    sampler = UtilSampler(device) if device.type == "cuda" else None
    if sampler:
        sampler.start()
    started, images = time.perf_counter(), 0
    for _ in range(steps):
        images += step(next(source))
    sync(device)
    seconds = time.perf_counter() - started
    out: dict[str, Any] = {"images_per_s": images / seconds, "steps": steps}
    if sampler:
        sampler.stop.set()
        sampler.join()
        out["gpu_util_mean"] = statistics.fmean(sampler.samples) if sampler.samples else None
        out["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--players", type=int, default=16)
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--images", type=int, default=16, help="crops per player")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--images-per-player", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=2.0, help="time per input-pipeline measurement")
    ap.add_argument("--repeats", type=int, default=3, help="input-pipeline measurements per path, in turn")
    ap.add_argument("--steps", type=int, default=4, help="timed training steps per path")
    ap.add_argument("--num-workers", type=int, default=os.cpu_count() or 1, help="cache-build processes")
    ap.add_argument("--embedding-dim", type=int, default=512)
    ap.add_argument("--data", type=Path, help="a storage root with the tenant's datasets (default: synthetic crops)")
    ap.add_argument("--tenant", default=TENANT, help="the tenant under --data")
    args = ap.parse_args()
    device = pick_device(args.device)
    kept = keep_freed_memory()  # as laxai-train does: both paths measured with it
    threads = torch.get_num_threads()
    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs, torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
          + f", load average {os.getloadavg()[0]:.2f}, freed host memory kept: {kept}")

    with tempfile.TemporaryDirectory(prefix="laxai-bench-pipeline-") as tmp:
        root = Path(tmp)
        if args.data is None:
            args.data = root / "data"
            generate(args.data, args.tenant, players=args.players, frames=args.frames,
                     images_per_player=args.images, val_players=2, seed=0)
        datasets = args.data / args.tenant / "datasets"
        if not datasets.is_dir():
            ap.error(f"--data/--tenant: no folder {datasets}")
        dirs = sorted(p for p in datasets.iterdir() if p.is_dir())
        index = data.scan_split(dirs, "train", 2, args.tenant)
        print(f"crops: {len(index)} train crops of {len(index.players)} players in {len(dirs)} datasets")

        cache = ensure_crop_cache(dirs, root / "crops", num_workers=args.num_workers)
        total = sum(len(d.files) for d in cache.datasets)
        print(f"cache build (one-off): {total} crops in {cache.seconds:.2f}s with {args.num_workers} workers "
              f"= {total / cache.seconds:.0f} img/s")
        images = split_images(index, cache.datasets)

        torch.set_num_threads(1)
        old_cfg, new_cfg = config(args, "pil"), config(args, "device")
        cpu = torch.device("cpu")
        runs: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
        for _ in range(max(1, args.repeats)):  # in turn, so both see the same machine
            runs["old"].append(drain(data.build_train_loader(index, old_cfg.training_kwargs, "cpu", 0),
                                     args.seconds, cpu))
            runs["new"].append(drain(DeviceTrainBatches(images, index, new_cfg.training_kwargs, cpu, 0),
                                     args.seconds, cpu))
        old, new = (max(runs[k], key=lambda r: r["per_cpu_s"]) for k in ("old", "new"))
        for name, key, r in (("old (PIL + torchvision v2)", "old", old), ("new (cache + batched augment)", "new", new)):
            median = statistics.median(x["per_cpu_s"] for x in runs[key])
            print(f"input pipeline, 1 thread, {name}: {r['per_cpu_s']:.0f} img/CPU-s best of {len(runs[key])} "
                  f"(median {median:.0f}), {r['per_wall_s']:.0f} img/s wall ({r['images']} images)")
        print(f"load average after the input-pipeline runs: {os.getloadavg()[0]:.2f}")
        torch.set_num_threads(threads)

        if device.type == "cuda":
            gpu = drain(DeviceTrainBatches(images, index, new_cfg.training_kwargs, device, 0), args.seconds, device)
            print(f"input pipeline on {device}, new: {gpu['per_wall_s']:.0f} img/s "
                  f"({gpu['per_cpu_s']:.0f} img per host CPU-s)")

        for name, cfg, loader in (
            ("old", old_cfg, data.build_train_loader(index, old_cfg.training_kwargs, device, 0)),
            ("new", new_cfg, DeviceTrainBatches(images, index, new_cfg.training_kwargs, device, 0)),
        ):
            r = train_steps(loader, cfg, device, args.steps)
            line = f"training steps on {device}, {name} input: {r['images_per_s']:.1f} img/s ({r['steps']} steps)"
            if "peak_mem_gib" in r:
                util = "n/a" if r["gpu_util_mean"] is None else f"{r['gpu_util_mean']:.0f}%"
                line += f", GPU busy {util}, peak memory {r['peak_mem_gib']:.2f} GiB"
            print(line)

    ratio = new["per_cpu_s"] / old["per_cpu_s"]
    print(f"input pipeline per core: old {old['per_cpu_s']:.0f} img/s, new {new['per_cpu_s']:.0f} img/s ({ratio:.1f}x)")


if __name__ == "__main__":
    main()

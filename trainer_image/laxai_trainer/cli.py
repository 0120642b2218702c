"""``laxai-train``: the trainer's command line (contract: docs/architecture.md).

::

    laxai-train run [--config FILE] [--storage-root ROOT] [--run-name NAME]
                    [--progress-file PATH] [--log-file PATH] [--cache-dir DIR]
    laxai-train synth --out ROOT --tenant T [--players N] [--frames F]
                      [--images-per-player K] [--seed S] [--mode match|random-kits]

Exit codes (:mod:`laxai_trainer.exit_codes`): 0 finished, 1 failure (retryable),
3 config/data error (also written to the termination log), 75 stopped by
SIGTERM/SIGINT after a checkpoint (retry resumes).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

from laxai_trainer import exit_codes
from laxai_trainer.config import RUN_NAME_PATTERN, TrainingConfig
from laxai_trainer.errors import ConfigError
from laxai_trainer.host_memory import keep_freed_memory
from laxai_trainer.job_config import ConfigDocumentError, load_config
from laxai_trainer.progress import FanOut, LogTail, ProgressTracker
from laxai_trainer.reporters import make_reporters
from laxai_trainer.settings import env_help
from laxai_trainer.status import Phase
from laxai_trainer.trainer_settings import TrainerSettings

log = logging.getLogger("laxai_trainer.cli")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Kubernetes reads at most 4096 bytes of the termination message.
TERMINATION_LIMIT = 4096


class UsageError(Exception):
    """A problem with the command line or config that no retry fixes (exit 3)."""


# ---- config and names ------------------------------------------------------------------


def read_config(path: str | None, settings: TrainerSettings) -> TrainingConfig:
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--config {path}: {exc.strerror or exc}") from exc
        source = path
    elif settings.training_config:
        text, source = settings.training_config, "LAXAI_TRAINING_CONFIG"
    else:
        raise UsageError("no training config: pass --config FILE or set LAXAI_TRAINING_CONFIG")
    try:
        return load_config(text, source)
    except ConfigDocumentError as exc:
        raise UsageError(str(exc)) from exc


def resolve_run_name(config: TrainingConfig, cli_name: str | None, env_name: str | None) -> str:
    """custom_name, else --run-name, else LAXAI_RUN_NAME, else a UTC timestamp."""
    name = config.custom_name or cli_name or env_name or datetime.now(UTC).strftime("run-%Y%m%d-%H%M%S")
    if not re.fullmatch(RUN_NAME_PATTERN, name):
        raise UsageError(
            f"run name {name!r} (from --run-name or LAXAI_RUN_NAME) must match {RUN_NAME_PATTERN}: "
            "letters, digits, '.', '_', '-', starting with a letter or digit"
        )
    return name


def write_termination_log(path: Path, message: str) -> None:
    """The reason of a failure, where Kubernetes shows it (only when the file is there and writable)."""
    try:
        if path.exists() and os.access(path, os.W_OK):
            path.write_bytes(message.encode()[:TERMINATION_LIMIT])
    except OSError as exc:
        log.debug("termination log %s not written: %s", path, exc)


# ---- logging ---------------------------------------------------------------------------


class TqdmHandler(logging.StreamHandler):
    """Log lines above the progress bar instead of through it."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:
            self.handleError(record)


def setup_logging(verbose: bool, log_file: Path, tty: bool) -> LogTail:
    """stderr (via tqdm on a terminal), the log file and the status log tail.

    ``verbose`` puts the trainer's own loggers at DEBUG; libraries stay at INFO.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_laxai", False):
            root.removeHandler(handler)
            handler.close()
    log_file.parent.mkdir(parents=True, exist_ok=True)
    tail = LogTail()
    handlers: list[logging.Handler] = [
        TqdmHandler() if tty else logging.StreamHandler(sys.stderr),
        logging.FileHandler(log_file, encoding="utf-8"),
        tail,
    ]
    for handler in handlers:
        if handler is not tail:
            handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler._laxai = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.getLogger("laxai_trainer").setLevel(logging.DEBUG if verbose else logging.INFO)
    return tail


# ---- signals ---------------------------------------------------------------------------


def install_stop_handlers(stop: threading.Event) -> None:
    """SIGTERM (preemption, cancel) and SIGINT: finish the step, checkpoint, exit 75."""

    def handler(signum: int, _frame: object) -> None:
        if not stop.is_set():
            log.warning("%s received: finishing the current step, then checkpointing", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


# ---- commands --------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    settings = TrainerSettings()
    try:
        config = read_config(args.config, settings)
        run_name = resolve_run_name(config, args.run_name, settings.run_name)
    except UsageError as exc:
        print(f"laxai-train: {exc}", file=sys.stderr)
        write_termination_log(settings.termination_log, str(exc))
        return exit_codes.CONFIG_ERROR

    cache_dir = Path(args.cache_dir) if args.cache_dir else settings.resolved_cache_dir()
    log_file = Path(args.log_file) if args.log_file else cache_dir / "work" / config.tenant_id / run_name / "trainer.log"
    tty = sys.stderr.isatty()
    tail = setup_logging(config.verbose, log_file, tty)
    reporters = make_reporters(args.progress_file, tty)
    tracker = ProgressTracker(FanOut(reporters), tail)
    stop = threading.Event()
    install_stop_handlers(stop)

    from laxai_trainer.job import JobOptions, run_job

    keep_freed_memory()  # a step's large host buffers are reused, not faulted in again each step
    options = JobOptions(
        storage_root=args.storage_root or settings.storage_root,
        run_name=run_name,
        cache_dir=cache_dir,
        log_file=log_file,
        device=settings.device,
        allow_download=settings.pretrained_download,
        stop=stop,
        job_id=settings.job_id,
        cancel_file=Path(args.cancel_file) if args.cancel_file else None,
        # In a pod: the TrainingJob status reporter knows whether spec.cancel is set.
        cancel_requested=next((r.cancel_requested for r in reporters if hasattr(r, "cancel_requested")), None),
    )
    log.info("run %s of tenant %s, storage %s", run_name, config.tenant_id, options.storage_root)
    try:
        result = run_job(config, options, tracker)
    except ConfigError as exc:  # run_job has logged it
        tracker.finish(Phase.failed, str(exc))
        write_termination_log(settings.termination_log, str(exc))
        return exit_codes.CONFIG_ERROR
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}"
        tracker.finish(Phase.failed, message)
        write_termination_log(settings.termination_log, message)
        return exit_codes.FAILURE
    if result.outcome == "preempted":
        for reporter in reporters:  # the checkpoint message is the last report: out before the exit
            if hasattr(reporter, "flush"):
                reporter.flush()
        return exit_codes.RETRY
    return exit_codes.OK


def cmd_synth(args: argparse.Namespace) -> int:
    from laxai_trainer.reid.data import synth

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    kwargs = {
        k: v
        for k, v in {
            "players": args.players,
            "frames": args.frames,
            "images_per_player": args.images_per_player,
            "seed": args.seed,
            "mode": args.mode,
        }.items()
        if v is not None
    }
    try:
        summary = synth.generate(args.out, args.tenant, **kwargs)
    except ValueError as exc:
        print(f"laxai-train synth: {exc}", file=sys.stderr)
        return exit_codes.CONFIG_ERROR
    print(
        f"{summary.images} crops of {summary.players['train']} train and {summary.players['val']} val players "
        f"in {len(summary.dataset_ids)} datasets written to {summary.root}/{summary.tenant_id}/datasets "
        f"({summary.bytes / 1e6:.1f} MB, {summary.seconds:.1f}s)"
    )
    return exit_codes.OK


def synth_modes() -> tuple[str, ...]:
    from laxai_trainer.reid.data.synth import MODES

    return MODES


def build_parser() -> argparse.ArgumentParser:
    epilog = env_help(TrainerSettings, unread=("backend",))
    parser = argparse.ArgumentParser(
        prog="laxai-train",
        description="Train LaxAI's player re-identification model (ResNet18 + CBAM, triplet loss).",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{run,synth}")
    run = sub.add_parser(
        "run",
        help="train once",
        description=(
            "Train once. Config: a TrainingJob YAML, its spec, or the seed request body (JSON/YAML), "
            "from --config or LAXAI_TRAINING_CONFIG. Outputs go to {root}/{tenant_id}/runs/{run_name}/. "
            "Exit codes: 0 done, 1 failure, 3 config/data error, 75 stopped after a checkpoint (retry)."
        ),
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--config", metavar="FILE", help="TrainingJob YAML, spec, or seed request (JSON/YAML)")
    run.add_argument("--storage-root", metavar="ROOT", help="gs://BUCKET[/prefix] or a folder (default: LAXAI_STORAGE_ROOT)")
    run.add_argument("--run-name", metavar="NAME", help="run name when the config has no custom_name")
    run.add_argument("--progress-file", metavar="PATH", help="JSON progress report, rewritten atomically")
    run.add_argument("--log-file", metavar="PATH", help="also log here; uploaded to {run}/logs/trainer.log")
    run.add_argument("--cache-dir", metavar="DIR", help="local dataset cache and work files (default: LAXAI_HOME/cache)")
    run.add_argument("--cancel-file", metavar="PATH",
                     help="if this file exists when a stop signal arrives, the stop is a cancel (logged as such)")
    run.set_defaults(func=cmd_run)

    synth = sub.add_parser(
        "synth",
        help="generate a synthetic dataset in the storage layout",
        description="Generate synthetic player crops under ROOT/{tenant}/datasets/ (demos, tests, benchmarks).",
    )
    synth.add_argument("--out", required=True, metavar="ROOT", help="storage root to write into")
    synth.add_argument("--tenant", required=True, metavar="T", help="tenant id")
    synth.add_argument("--players", type=int, metavar="N", help="players (identities) per frame dataset")
    synth.add_argument("--frames", type=int, metavar="F", help="frame datasets to generate")
    synth.add_argument("--images-per-player", type=int, metavar="K", help="crops per player and split")
    synth.add_argument("--seed", type=int, metavar="S", help="random seed")
    synth.add_argument(
        "--mode", choices=synth_modes(), default=None,
        help="match (default): two teams per frame in shared kits; random-kits: a random kit per player",
    )
    synth.set_defaults(func=cmd_synth)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

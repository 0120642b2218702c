"""A stand-in for ``laxai-train`` (LAXAI_TRAINER_COMMAND) that tests the local backend's
process management in milliseconds. It speaks the trainer's command-line contract
(docs/architecture.md) and takes its behaviour from the job's wandb_tags:

  fake-sleep=S       seconds per epoch (default 0.02)
  fake-exit=N        exit with N after the epochs (after printing a traceback-like line)
  fake-ignore-term   ignore SIGTERM (to test the SIGKILL after the grace period)
  fake-child         start a child process in the same process group (DataLoader workers)
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    args = sys.argv[1:]
    assert args[0] == "run", args
    opts = dict(zip(args[1::2], args[2::2], strict=True))
    config = json.loads(Path(opts["--config"]).read_text())
    tags = dict(t.partition("=")[::2] for t in config.get("wandb_tags", []))
    job_dir = Path(opts["--progress-file"]).parent
    (job_dir / "argv.json").write_text(json.dumps({"argv": args, "env_keys": sorted(os.environ),
                                                      "job_id": os.environ.get("LAXAI_JOB_ID")}))
    log = open(opts["--log-file"], "a")  # noqa: SIM115

    def say(line: str) -> None:
        log.write(line + "\n")
        log.flush()
        print(line, flush=True)

    epochs = config["training_kwargs"]["num_epochs"]

    def report(status: str, epoch: int | None, loss: float | None, metrics: dict | None = None) -> None:
        body = {"progress": {"status": status, "current_epoch": epoch, "total_epochs": epochs,
                             "current_loss": loss, "best_loss": loss, "message": f"epoch {epoch}/{epochs}"},
                "metrics": metrics}
        tmp = Path(opts["--progress-file"] + ".tmp")
        tmp.write_text(json.dumps(body))
        os.replace(tmp, opts["--progress-file"])

    def on_term(*_):
        say("SIGTERM: checkpoint written, exiting 75")
        sys.exit(75)

    signal.signal(signal.SIGTERM, signal.SIG_IGN if "fake-ignore-term" in tags else on_term)
    if "fake-child" in tags:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
        (job_dir / "child.pid").write_text(str(child.pid))
    say(f"run {opts['--run-name']} tenant {config['tenant_id']} root {opts['--storage-root']}")
    report("running", 0, None)
    for epoch in range(1, epochs + 1):
        time.sleep(float(tags.get("fake-sleep", 0.02)))
        report("running", epoch, 1.0 / epoch)
        say(f"epoch {epoch}/{epochs} loss={1.0 / epoch:.4f}")
    if "fake-exit" in tags:
        print("Traceback (most recent call last): RuntimeError: boom", file=sys.stderr, flush=True)
        return int(tags["fake-exit"])
    report("completed", epochs, 1.0 / epochs, {"rank1": 0.5, "mAP": 0.25, "epochs_completed": epochs})
    say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""scripts/quickstart.sh: the README's main command, run end to end in a temporary folder."""

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quickstart_trains_the_seed_example_to_completion(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    result = subprocess.run(
        [str(ROOT / "scripts" / "quickstart.sh"), "--epochs", "1", "--players", "6", "--frames", "2",
         "--home", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "==> completed" in result.stdout
    assert "rank-1" in result.stdout and "mAP" in result.stdout

    run = tmp_path / "storage" / "tenant1" / "runs" / "api_test_run"  # the seed's custom_name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["final"]["mAP"] > 0
    assert any((run / "checkpoints").iterdir())
    # The request was the seed's example body, epochs lowered by the flag: its values reached the trainer.
    config = json.loads((run / "config.json").read_text())
    assert config["training_kwargs"]["batch_size"] == 32 and config["model_kwargs"]["embedding_dim"] == 256
    assert config["training_kwargs"]["num_epochs"] == 1
    # The API was stopped: no process still holds the quickstart's home folder open.
    leftover = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert leftover.stdout.strip() == "", leftover.stdout

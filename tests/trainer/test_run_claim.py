"""laxai_trainer.run_claim and the run.json rules the API shares (run_layout.nothing_left)."""

import json

import pytest

from laxai_trainer.errors import ConfigError
from laxai_trainer.run_claim import archive_run, archive_stamp, check_continuation, claim, claim_run, outputs
from laxai_trainer.run_layout import RunLayout, meta_nothing_left, nothing_left, nothing_left_message
from laxai_trainer.storage import open_storage

MINE = {"job_id": "uid-1", "attempt": 2, "started_at": "2026-01-02T03:04:05Z"}


@pytest.mark.parametrize(("previous", "resume", "has_outputs", "expected"), [
    (MINE, False, True, ("retry", 3)),  # a job's own retry resumes, whatever the flag says
    (MINE, True, True, ("retry", 3)),
    (None, False, False, ("new", 1)),
    ({"job_id": "uid-0"}, True, True, ("continue", 1)),
    ({"job_id": "uid-0"}, False, True, ("restart", 1)),
    (None, False, True, ("restart", 1)),  # outputs without a run.json (an older trainer's)
    ({"job_id": None}, True, True, ("continue", 1)),
])
def test_claim(previous, resume, has_outputs, expected):
    found = claim(previous, "uid-1", resume, has_outputs)
    assert (found.kind, found.attempt) == expected


def test_a_trainer_without_a_job_id_is_a_new_job_every_time():
    assert claim({"job_id": None, "attempt": 1}, None, False, True).kind == "restart"


@pytest.mark.parametrize(("done", "stopped", "earlier", "asked", "expected"), [
    (5, False, 5, 5, True),
    (5, False, 5, 8, False),
    (3, False, 5, 5, False),  # a failed or preempted run continues
    (3, True, 5, 5, True),  # an early stop ended that request
    (3, True, 5, 6, False),  # asked for more than it was: continue
])
def test_nothing_left(done, stopped, earlier, asked, expected):
    assert nothing_left(done, stopped, earlier, asked) is expected
    meta = {"epochs_completed": done, "stopped_early": stopped, "num_epochs": earlier}
    assert meta_nothing_left(meta, asked) is expected


def test_nothing_left_message_says_how_to_proceed():
    text = nothing_left_message("api_test_run", 10, 10)
    for words in ("nothing left to train", "num_epochs", "another custom_name", "resume_from_checkpoint: false",
                  "runs/api_test_run/archive/"):
        assert words in text


def test_archive_moves_every_output_run_json_last(tmp_path):
    storage = open_storage(tmp_path)
    layout = RunLayout("t1", "r")
    for path in ("run.json", "checkpoints/last.pt", "final/model.pt", "archive/old/run.json"):
        storage.write_bytes(layout.path(path), path.encode())
    moves = []
    real_move = storage.move
    storage.move = lambda a, b: (moves.append(a), real_move(a, b))
    stamp = archive_stamp(MINE, "2026-12-01T00:00:00Z")
    target = archive_run(storage, layout, stamp)
    assert target == "t1/runs/r/archive/20260102T030405Z"
    assert moves[-1] == layout.run_meta and len(moves) == 3
    assert outputs(storage, layout) == []
    assert storage.read_bytes(f"{target}/final/model.pt") == b"final/model.pt"
    assert storage.read_bytes(layout.path("archive/old/run.json")) == b"archive/old/run.json"  # kept


def test_gcs_move_is_a_server_side_rename(gcs_root):
    storage = open_storage(gcs_root)
    storage.write_bytes("a/x.bin", b"data")
    storage.move("a/x.bin", "b/y.bin")
    assert not storage.exists("a/x.bin") and storage.read_bytes("b/y.bin") == b"data"


def write_meta(storage, layout, meta):
    storage.write_bytes(layout.run_meta, json.dumps(meta).encode())


def test_claim_run_records_a_retry_and_keeps_what_its_first_attempt_found(tmp_path):
    storage, layout = open_storage(tmp_path), RunLayout("t1", "r")
    write_meta(storage, layout, {**MINE, "claim": "restart", "archived_to": "gs://b/x", "previous_job_id": "uid-0"})
    found, record = claim_run(storage, layout, "uid-1", False, 5, "2026-12-01T00:00:00Z")
    assert (found.kind, found.attempt) == ("retry", 3)
    assert record == {"attempt": 3, "claim": "restart", "previous_job_id": "uid-0", "archived_to": "gs://b/x"}
    assert storage.exists(layout.run_meta)  # nothing archived


def test_claim_run_archives_an_earlier_run_started_over(tmp_path):
    storage, layout = open_storage(tmp_path), RunLayout("t1", "r")
    write_meta(storage, layout, {"job_id": "uid-0", "started_at": "2026-01-02T03:04:05Z"})
    found, record = claim_run(storage, layout, "uid-1", False, 5, "2026-12-01T00:00:00Z")
    assert found.kind == "restart" and record["previous_job_id"] == "uid-0"
    assert record["archived_to"] == storage.uri("t1/runs/r/archive/20260102T030405Z")
    assert outputs(storage, layout) == []


def test_claim_run_refuses_to_continue_a_run_with_nothing_left(tmp_path):
    storage, layout = open_storage(tmp_path), RunLayout("t1", "r")
    write_meta(storage, layout, {"job_id": "uid-0", "epochs_completed": 5, "num_epochs": 5})
    with pytest.raises(ConfigError, match="run 'r' already finished .5 epochs trained."):
        claim_run(storage, layout, "uid-1", True, 5, "2026-12-01T00:00:00Z")
    found, _ = claim_run(storage, layout, "uid-1", True, 6, "2026-12-01T00:00:00Z")
    assert found.kind == "continue"


@pytest.mark.parametrize(("kind", "earlier_job", "done", "stopped", "earlier", "asked", "expected"), [
    ("continue", True, 3, True, 3, 6, True),  # early-stopped, asked for more: reopened
    ("continue", True, 3, False, 6, 6, False),  # preempted earlier run: continues as it was
    ("retry", False, 3, True, 3, 3, False),  # this job's own checkpoint: never judged
    ("retry", True, 3, True, 3, 3, False),  # an earlier job's checkpoint on a retry: nothing left is not an error
    ("retry", True, 3, True, 3, 6, True),
])
def test_check_continuation(kind, earlier_job, done, stopped, earlier, asked, expected):
    assert check_continuation(kind, earlier_job, done, stopped, earlier, asked, "r") is expected


def test_check_continuation_refuses_a_continue_that_trains_nothing():
    with pytest.raises(ConfigError, match="nothing left to train"):
        check_continuation("continue", True, 3, True, 3, 3, "r")

"""Read an offline wandb run (``run-*.wandb``): a LevelDB-style log of protobuf Records.

wandb ≥ 0.19 no longer ships a Python reader; the format is small: a 7-byte file header,
then 32 KiB blocks of chunks (crc32 u32, length u16, type u8, payload), where type 1 is a
whole record and 2/3/4 are its first/middle/last pieces.
"""

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

FILE_HEADER = 7
BLOCK = 32768
CHUNK_HEADER = 7


def _payloads(raw: bytes):
    pos, pending = FILE_HEADER, b""
    while pos + CHUNK_HEADER <= len(raw):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < CHUNK_HEADER:  # block trailer padding
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", raw[pos : pos + CHUNK_HEADER])
        data = raw[pos + CHUNK_HEADER : pos + CHUNK_HEADER + length]
        pos += CHUNK_HEADER + length
        if kind == 1:
            yield data
        elif kind == 2:
            pending = data
        elif kind == 3:
            pending += data
        elif kind == 4:
            yield pending + data


def read_run(path: Path) -> dict:
    """{'name', 'tags', 'config', 'history': [{key: value}], 'summary', 'artifacts'} of one run file."""
    out = {"name": None, "tags": [], "config": {}, "history": [], "summary": {}, "artifacts": []}
    for data in _payloads(path.read_bytes()):
        record = pb.Record()
        record.ParseFromString(data)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["name"] = record.run.display_name
            out["tags"] = list(record.run.tags)
            out["config"].update({u.key: json.loads(u.value_json) for u in record.run.config.update})
        elif kind == "config":
            out["config"].update({u.key: json.loads(u.value_json) for u in record.config.update})
        elif kind == "history":
            out["history"].append(
                {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in record.history.item}
            )
        elif kind == "summary":
            out["summary"].update({u.key: json.loads(u.value_json) for u in record.summary.update if u.key})
        elif kind == "artifact":
            out["artifacts"].append((record.artifact.name, record.artifact.type))
    return out


def find_run_files(root: Path) -> list[Path]:
    return sorted(root.rglob("run-*.wandb"))

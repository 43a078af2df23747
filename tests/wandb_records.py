"""Read the history rows of an offline W&B run file (RUN_DIR/wandb/offline-run-*/run-*.wandb).

Written by hand because wandb 0.31 dropped its Python reader (wandb.sdk.internal.datastore; its Go
core writes the file now). The format is LevelDB's log: a 7-byte header (":W&B", magic 0xBEE1,
version 0), then 32 KiB blocks of records (crc32c u32, length u16, type u8: full/first/middle/last)
holding wandb's protobuf `Record`s.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

BLOCK, HEADER, RECORD_HEADER = 32768, 7, 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list[bytes]:
    data = path.read_bytes()
    assert data[:4] == b":W&B" and struct.unpack("<H", data[4:6])[0] == 0xBEE1, path
    out, pending, pos = [], b"", HEADER
    while pos + RECORD_HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < RECORD_HEADER:  # block trailer: padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + RECORD_HEADER])
        chunk = data[pos + RECORD_HEADER:pos + RECORD_HEADER + length]
        pos += RECORD_HEADER + length
        if kind == FULL:
            out.append(chunk)
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            out.append(pending + chunk)
        else:  # zero padding at the end of a file that was still open
            break
    return out


def history(path: Path) -> list[dict]:
    """The rows `run.log` wrote, as {key: value}."""
    from wandb.proto import wandb_internal_pb2 as pb

    rows = []
    for raw in records(path):
        rec = pb.Record()
        rec.ParseFromString(raw)
        if rec.WhichOneof("record_type") == "history":
            rows.append({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                         for i in rec.history.item})
    return rows

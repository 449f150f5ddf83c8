"""Read W&B offline run files (``wandb/offline-run-*/run-*.wandb``) without W&B's servers.

A ``.wandb`` file is a LevelDB log: a 7-byte header (``:W&B``, uint16 LE magic 0xBEE1, version 0),
then 32 KiB blocks counted from the start of the file. A block holds chunks, each with a 7-byte
header (uint32 LE ``zlib.crc32`` of type byte + data, uint16 LE length, uint8 type FULL/FIRST/
MIDDLE/LAST); a block tail shorter than 7 bytes is zero padding. The data of a FULL chunk, or of
a FIRST..LAST run of chunks, is one serialized ``wandb_internal_pb2.Record``.
"""

import json
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf.message import DecodeError
from wandb.proto import wandb_internal_pb2

_FILE_HEADER = struct.Struct("<4sHB")  # ident, magic, version
_CHUNK_HEADER = struct.Struct("<IHB")  # crc32, length, type
_IDENT, _MAGIC, _VERSION = b":W&B", 0xBEE1, 0
_BLOCK_SIZE = 32768
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


class WandbFileError(ValueError):
    """A ``.wandb`` file or run folder that cannot be read: bad header, corrupt or truncated."""


@dataclass
class OfflineRun:
    run_id: str = ""
    project: str = ""
    group: str = ""
    name: str = ""
    tags: list[str] = field(default_factory=list)
    job_type: str = ""
    config: dict[str, Any] = field(default_factory=dict)  # nested, without wandb's "_wandb" key
    history: list[dict[str, Any]] = field(default_factory=list)  # rows by metric name; media as dicts
    summary: dict[str, Any] = field(default_factory=dict)  # nested, as in ``run.summary``
    exit_code: int | None = None  # None: the run never finished (no exit record)


def _chunks(data: bytes, path: Path) -> Iterator[tuple[int, int, bytes]]:
    """Yield ``(offset, type, data)`` for each checksummed chunk after the file header."""
    pos = _FILE_HEADER.size
    while pos < len(data):
        room = _BLOCK_SIZE - pos % _BLOCK_SIZE
        if room < _CHUNK_HEADER.size:
            if data[pos : pos + room].strip(b"\0"):
                raise WandbFileError(f"{path}: non-zero block padding at byte {pos}")
            pos += room
            continue
        start = pos + _CHUNK_HEADER.size
        if start > len(data):
            raise WandbFileError(f"{path}: truncated chunk header at byte {pos}")
        crc, length, kind = _CHUNK_HEADER.unpack_from(data, pos)
        if length > room - _CHUNK_HEADER.size or start + length > len(data):
            raise WandbFileError(f"{path}: chunk at byte {pos} runs past its block or the file")
        payload = data[start : start + length]
        if zlib.crc32(bytes([kind]) + payload) != crc:
            raise WandbFileError(f"{path}: checksum mismatch in chunk at byte {pos}")
        yield pos, kind, payload
        pos = start + length


def _parse(payload: bytes, path: Path, offset: int) -> wandb_internal_pb2.Record:
    record = wandb_internal_pb2.Record()
    try:
        record.ParseFromString(payload)
    except DecodeError as err:
        raise WandbFileError(f"{path}: bad Record in chunk at byte {offset}: {err}") from err
    return record


def iter_records(path: str | os.PathLike[str], partial: bool = False) -> Iterator[wandb_internal_pb2.Record]:
    """Yield the records of one ``.wandb`` file in order; raise WandbFileError if it is damaged.

    With ``partial``, a damaged or truncated tail ends the records instead (the file of a process
    killed while writing: everything before the damage is read).
    """
    try:
        yield from _records(Path(path))
    except WandbFileError:
        if not partial:
            raise


def _records(path: Path) -> Iterator[wandb_internal_pb2.Record]:
    data = path.read_bytes()
    header = data[: _FILE_HEADER.size]
    if len(header) < _FILE_HEADER.size or _FILE_HEADER.unpack(header) != (_IDENT, _MAGIC, _VERSION):
        raise WandbFileError(f"{path}: not a version-{_VERSION} .wandb file (header {header!r})")
    parts: list[bytes] | None = None  # the chunks of a record begun by FIRST
    for offset, kind, payload in _chunks(data, path):
        if kind == _FULL and parts is None:
            yield _parse(payload, path, offset)
        elif kind == _FIRST and parts is None:
            parts = [payload]
        elif kind == _MIDDLE and parts is not None:
            parts.append(payload)
        elif kind == _LAST and parts is not None:
            yield _parse(b"".join([*parts, payload]), path, offset)
            parts = None
        else:
            raise WandbFileError(f"{path}: unexpected chunk type {kind} at byte {offset}")
    if parts is not None:
        raise WandbFileError(f"{path}: truncated, the last record is incomplete")


def _key_path(item: Any) -> list[str]:
    """The key of a config/summary/history item: ``nested_key`` if set, else ``[key]``."""
    return list(item.nested_key) or [item.key]


def _apply(target: dict[str, Any], record: Any) -> None:
    """Apply a ConfigRecord's or SummaryRecord's update/remove items to a nested dict."""
    for item in record.update:
        *parents, leaf = _key_path(item)
        node = target
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = json.loads(item.value_json)
    for item in record.remove:
        *parents, leaf = _key_path(item)
        node = target
        for key in parents:
            node = node.get(key, {})
        node.pop(leaf, None)


def _flatten_metrics(row: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested metric dicts as ``a/b`` names (as W&B shows them); media (a dict with ``_type``:
    tables, images, histograms) stay whole: ``row["latent/table"]["path"]``."""
    flat: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, dict) and "_type" not in value:
            flat.update(_flatten_metrics(value, f"{prefix}{key}/"))
        else:
            flat[prefix + key] = value
    return flat


def _find_run_file(path: Path) -> Path:
    """The ``.wandb`` file of a file, an ``offline-run-*`` folder or a folder holding ``wandb/``."""
    if not path.exists():
        raise FileNotFoundError(path)
    if path.is_file():
        return path
    files = sorted(path.glob("run-*.wandb"))  # path is an offline-run-* folder
    files = files or sorted(path.glob("wandb/offline-run-*/run-*.wandb"))  # or has wandb/
    if len(files) != 1:
        found = ", ".join(str(file.relative_to(path)) for file in files) or "none"
        raise WandbFileError(f"expected exactly one offline run in {path}, found: {found}")
    return files[0]


def read_run(path_or_run_dir: str | os.PathLike[str]) -> OfflineRun:
    """Replay an offline run's records into its metadata, config, history, summary and exit code.

    Read after ``wandb.teardown()``: ``run.finish()`` can return before the file's last block is
    flushed, and a file still being written reads as truncated.
    """
    run = OfflineRun()
    for record in iter_records(_find_run_file(Path(path_or_run_dir))):
        kind = record.WhichOneof("record_type")
        if kind == "run":  # written at init and again, in full, whenever name/tags/... change
            info = record.run
            run.run_id, run.project, run.group = info.run_id, info.project, info.run_group
            run.name, run.tags, run.job_type = info.display_name, list(info.tags), info.job_type
            _apply(run.config, info.config)
        elif kind == "config":
            _apply(run.config, record.config)
        elif kind == "summary":
            _apply(run.summary, record.summary)
        elif kind == "history":
            row: dict[str, Any] = {}
            for item in record.history.item:
                *parents, leaf = _key_path(item)
                node = row
                for key in parents:
                    node = node.setdefault(key, {})
                node[leaf] = json.loads(item.value_json)
            run.history.append(_flatten_metrics(row))
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    run.config.pop("_wandb", None)
    return run

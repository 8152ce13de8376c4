"""The ``prepare`` stage: inputs -> staged segments (stage 1) -> litdata shards + manifest (stage 2).

Why two stages instead of one ``litdata.optimize`` over the inputs: ``optimize`` writes chunks that mix
many inputs, and its checkpoint resume does not promise that a run killed mid-chunk leaves no
duplicated or half-written samples. Here the expensive work (decoding, face tracking, cropping) is
done once per input into ``staging/<video_id>/`` folders that appear atomically, with a ``record.json``
per input as the source of truth; packing the shards from them is cheap, so it is redone as a whole into
a temporary folder and swapped in. A kill at any moment loses at most the inputs in flight; a run over
the same inputs finds every record and identical shards and does nothing.

Layout of ``output/``::

    staging/<video_id>/record.json, 000000.npz, ...   per-input results (status, reason, segments)
    shards/index.json, chunk-*.bin, lipsync.json      litdata shards (what the datamodule streams)
    manifest.jsonl                                    one row per input file and per clip, and one per
                                                      file of the input folder not taken, with why

Parallelism: stage 1 runs ``litdata.map`` over the pending inputs with ``workers`` processes (0 = in
this process). Across machines, litdata's own mechanism: start the same command on every node with
``DATA_OPTIMIZER_NUM_NODES=<n>`` and ``DATA_OPTIMIZER_NODE_RANK=<i>`` and ``output`` on a shared
filesystem; each node curates its share, node 0 waits for every record and packs the shards.
"""

from __future__ import annotations

import dataclasses

import hashlib
import json
import os
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from lipsync.data import shards
from lipsync.media import atomic_path
from lipsync.prepare.curate import RECORD, Curator, curate_inline, video_id

MEDIA_EXTENSIONS = ("mp4", "mov", "mkv", "avi", "webm", "m4v", "flv", "mpg", "mpeg", "ts", "wmv", "3gp")
LIST_EXTENSIONS = (".txt", ".lst", ".list")


def list_inputs(source: str | os.PathLike, extensions: Sequence[str] = MEDIA_EXTENSIONS) -> list[Path]:
    """Input files: a folder (searched recursively for ``extensions``), a list file (one path per line,
    ``#`` comments), or one media file.

    Raises:
        ValueError: ``source`` does not exist, or yields no inputs.
    """
    src = Path(source).expanduser()
    exts = _suffixes(extensions)
    if src.is_dir():
        found = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in exts)
    elif src.is_file() and src.suffix.lower() in LIST_EXTENSIONS:
        lines = (line.strip() for line in src.read_text().splitlines())
        found = [(src.parent / line).resolve() if not Path(line).is_absolute() else Path(line)
                 for line in lines if line and not line.startswith("#")]
    elif src.is_file():
        found = [src]
    else:
        raise ValueError(f"input={source}: no such file or folder (give a folder of videos or a .txt list of paths)")
    if not found:
        raise ValueError(f"input={source}: no media files ({', '.join(sorted(exts))}) found")
    return [p.resolve() for p in found]


def skipped_files(source: str | os.PathLike,
                  extensions: Sequence[str] = MEDIA_EXTENSIONS) -> list[dict]:
    """Every file of the folder ``source`` that :func:`list_inputs` does not take, as manifest rows
    ``{"kind": "skipped", "path", "reason"}``; none for a list file or one file (those are all taken)."""
    src = Path(source).expanduser()
    if not src.is_dir():
        return []
    exts = _suffixes(extensions)
    known = ", ".join(e.lstrip(".") for e in sorted(exts))
    return [{"kind": "skipped", "path": str(p.resolve()),
             "reason": f"extension {p.suffix or '(none)'!r} is not one of extensions=[{known}]"}
            for p in sorted(src.rglob("*")) if p.is_file() and p.suffix.lower() not in exts]


def _suffixes(extensions: Sequence[str]) -> set[str]:
    return {"." + e.lower().lstrip(".") for e in extensions}


def config_hash(settings: Any) -> str:
    """Short hash of the curation settings (part of every input's fingerprint)."""
    return hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:10]


def prepare(curator: Curator, inputs: Sequence[Path], output: Path, workers: int = 0,
            chunk_bytes: str = "64MB", progress: bool = True,
            skipped: Sequence[dict] = ()) -> dict[str, Any]:
    """Run both stages; returns a summary (counts by status, shard path, whether anything was done).
    ``skipped``: the files not taken (:func:`skipped_files`), listed in the manifest with their reason."""
    output.mkdir(parents=True, exist_ok=True)
    pending = [str(p) for p in inputs if not curator.is_done(p)]
    if pending:
        # Every node must split the same list, so a multi-node run hands out all inputs and the curator
        # skips the done ones itself.
        _curate(curator, pending if _num_nodes() == 1 else [str(p) for p in inputs], output, workers, progress)
    if _node_rank() != 0:
        return {"node_rank": _node_rank(), "curated": len(pending)}
    records = _wait_for_records(curator.staging, inputs)
    _remove_stale_partials(curator.staging)
    crop = {"_target_": f"{type(curator.crop).__module__}.{type(curator.crop).__qualname__}",
            **dataclasses.asdict(curator.crop)}
    packed = _pack(records, output / "shards", workers, chunk_bytes, curator.staging, {"crop": crop})
    manifest_changed = _write_manifest(records, output / "manifest.jsonl", skipped)
    statuses = Counter(r["status"] for r in records)
    return {"inputs": len(records), "curated": len(pending), "packed": packed,
            "manifest_changed": manifest_changed, "status": dict(statuses),
            "segments": sum(r.get("segments", 0) for r in records), "skipped_files": len(skipped),
            "reasons": Counter(r["reason"] for r in records if r["status"] != "ok").most_common(10)}


def _curate(curator: Curator, items: list[str], output: Path, workers: int, progress: bool) -> None:
    if workers <= 0:  # in this process; on a multi-node run, this node's stride of the inputs
        curate_inline(curator, items[_node_rank()::_num_nodes()], progress)
        return
    import litdata

    # litdata wipes its cache folders at start: private ones keep concurrent runs apart.
    cache = output / ".litdata-cache"
    os.environ.setdefault("DATA_OPTIMIZER_CACHE_FOLDER", str(cache / "chunks"))
    os.environ.setdefault("DATA_OPTIMIZER_DATA_CACHE_FOLDER", str(cache / "data"))
    # map's output_dir receives nothing (the curator writes its folders itself, atomically).
    litdata.map(curator, items, output_dir=str(output / ".map-out"), num_workers=workers,
                reorder_files=True, keep_data_ordered=False)


def _node_rank() -> int:
    return int(os.environ.get("DATA_OPTIMIZER_NODE_RANK", "0"))


def _num_nodes() -> int:
    return max(1, int(os.environ.get("DATA_OPTIMIZER_NUM_NODES", "1")))


def _wait_for_records(staging: Path, inputs: Sequence[Path], poll_s: float = 10.0) -> list[dict]:
    """Records of all inputs; on multi-node runs node 0 waits here for the other nodes' shares."""
    paths = [staging / video_id(p) / RECORD for p in inputs]
    announced = False
    while missing := [p for p in paths if not p.exists()]:
        if _num_nodes() == 1:
            raise RuntimeError(f"{len(missing)} inputs have no record after curation, e.g. {missing[0].parent}")
        if not announced:  # a node that died is restarted with the same command; it resumes
            print(f"node 0: waiting for {len(missing)} inputs curated by the other nodes", flush=True)
            announced = True
        time.sleep(poll_s)
    return [json.loads(p.read_text()) for p in paths]


def _remove_stale_partials(staging: Path) -> None:
    """Folders of runs killed mid-input (never renamed into place)."""
    for p in staging.glob(".*.partial-*"):
        shutil.rmtree(p, ignore_errors=True)


def _pack(records: list[dict], shard_dir: Path, workers: int, chunk_bytes: str, staging: Path,
          extra_meta: dict[str, Any] | None = None) -> bool:
    """(Re)write the shards unless they already hold exactly these segments; True if written.

    ``extra_meta`` (the crop spec) is stored in the shards' sidecar so training and inference can read
    how the frames were cut.
    """
    files = sorted(p for r in records if r["status"] == "ok" for p in (staging / r["video_id"]).glob("*.npz"))
    meta = {"segments": len(files),
            "content": hashlib.sha1("\n".join(f"{r['video_id']}:{r.get('fingerprint')}" for r in records
                                              if r["status"] == "ok").encode()).hexdigest(),
            **(extra_meta or {})}
    if shards.read_shard_meta(shard_dir) == meta:
        return False
    if not files:
        return False
    shards.write_shards(files, shard_dir, meta, workers, chunk_bytes)
    return True


def manifest_rows(records: list[dict], skipped: Sequence[dict] = ()) -> list[dict]:
    """One row per input file, followed by one row per clip of it; then one per file not taken."""
    rows = []
    for r in records:
        rows.append({k: v for k, v in r.items() if k not in ("clips", "traceback")})
        rows.extend({"video_id": r["video_id"], **c} for c in r.get("clips", []))
    return rows + list(skipped)


def _write_manifest(records: list[dict], path: Path, skipped: Sequence[dict] = ()) -> bool:
    text = "".join(json.dumps(row, sort_keys=True) + "\n" for row in manifest_rows(records, skipped))
    if path.exists() and path.read_text() == text:
        return False
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return True


def read_manifest(path: str | os.PathLike) -> list[dict]:
    """Rows of a ``manifest.jsonl``."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]

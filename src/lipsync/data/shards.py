"""The curated corpus on disk: staged segments, and litdata shards made of them.

``python -m lipsync.prepare`` cuts each source video into coherent face clips and each clip into
*segments* of about ``segment_frames`` frames (4 s by default). A segment is the unit of storage and of
streaming: the datamodule draws a T-frame window from it. Every segment is self-contained:

================ ===================== ===========================================================
key              shape / type          meaning
================ ===================== ===========================================================
key              str                   ``"<video_id>/<clip:03d>/<start:06d>"``
video_id         str                   the source video (same id for all its clips)
source           str                   JSON ``{"path": ...}`` of the source file at curation time (a bare
                                       path ending in ``.mp4`` would make litdata store the video itself)
frames           bytes                 N JPEG images (training resolution, face-centred crop)
frame_offsets    (N + 1,) int64        byte offsets of each JPEG in ``frames``
landmarks        (N, K, 2) float32     landmarks in crop pixels (gaps filled)
boxes            (N, 4) float32        face box x0, y0, x1, y1 in crop pixels
crop_boxes       (N, 4) float32        the crop square in source-frame pixels
audio            (N * 640,) float32    16 kHz mono, sample 0 at frame 0 (640 samples per 25 fps frame)
start_frame      int                   first frame on the source's 25 fps timeline
start_time       float                 its time in the source (s)
layout           str                   landmark layout kind (see :mod:`lipsync.data.faces`)
mouth_idx        (M,) int64            lip landmark indices
lower_face_idx   (L,) int64            lower-face landmark indices
ref_frames       bytes                 R JPEG reference candidates drawn from the whole source video
ref_offsets      (R + 1,) int64        their byte offsets
ref_landmarks    (R, K, 2) float32     their landmarks in crop pixels
================ ===================== ===========================================================

Optional cached encodings (``encoders`` in ``conf/prepare.yaml``; equal to what the frozen encoders
compute at load time from the stored segment): ``audio_feats`` (S, D) float32 audio-encoder steps of the
segment's audio (50 steps/s), ``latents`` (N, C, h, w) float32 VAE latents of the stored frames, and
``masked_latents`` of the frames under the mask named by ``mask_spec`` (str).

Why reference candidates are stored with each segment: a training sample must be readable alone when
streamed from object storage (no random access to other chunks), and the pool of ``R`` frames is drawn
uniformly over every clip of the source video, as the paper draws the reference "from the source video".
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Mapping

import cv2
import numpy as np

from lipsync.data.faces import LandmarkLayout
from lipsync.media import atomic_path

SAMPLES_PER_FRAME = 640  # 16 kHz / 25 fps
SHARD_META = "lipsync.json"  # sidecar beside litdata's index.json: what the shards were built from


def encode_jpeg(frame: np.ndarray, quality: int = 95) -> bytes:
    """One RGB uint8 frame (H, W, 3) -> JPEG bytes."""
    bgr = frame[:, :, ::-1]  # free when ``frame`` is itself a channel-reversed view of BGR pixels
    if not bgr.flags.c_contiguous:
        bgr = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR)  # ~20x faster than a strided copy
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"JPEG encoding failed for a frame of shape {frame.shape}")
    return buf.tobytes()


def pack_blobs(blobs: list[bytes]) -> tuple[bytes, np.ndarray]:
    """Concatenate byte strings; offsets (N + 1,) mark where each starts and the last ends."""
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    return b"".join(blobs), offsets


def decode_jpegs(blob: bytes | memoryview, offsets: np.ndarray, rows: Iterable[int]) -> np.ndarray:
    """Decode the JPEGs ``rows`` of a packed blob -> (len(rows), H, W, 3) uint8 RGB."""
    data = np.frombuffer(blob, dtype=np.uint8)
    out = []
    for r in rows:
        img = cv2.imdecode(data[offsets[r]:offsets[r + 1]], cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"frame {r} of a segment is not a decodable JPEG (corrupt shard?)")
        out.append(img[:, :, ::-1])
    return np.ascontiguousarray(np.stack(out))


def layout_of(item: Mapping[str, Any]) -> LandmarkLayout:
    """The landmark layout a segment was stored with."""
    return LandmarkLayout(str(item["layout"]), np.asarray(item["mouth_idx"]), np.asarray(item["lower_face_idx"]))


def num_frames(item: Mapping[str, Any]) -> int:
    """Frames in a segment."""
    return len(item["frame_offsets"]) - 1


# --- staged segments (one npz per segment, written by prepare's first stage) ---------------------


def save_segment(path: str | os.PathLike, item: Mapping[str, Any]) -> Path:
    """Write one segment dict as an npz (bytes as uint8 arrays, strings as 0-d str arrays), atomically."""
    arrays = {k: (np.frombuffer(v, dtype=np.uint8) if isinstance(v, (bytes, memoryview)) else np.asarray(v))
              for k, v in item.items()}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return Path(path)


BYTES_KEYS = ("frames", "ref_frames")
STR_KEYS = ("key", "video_id", "source", "layout", "mask_spec")
SCALAR_KEYS = {"start_frame": int, "start_time": float}


def load_segment(path: str | os.PathLike) -> dict[str, Any]:
    """Read a staged segment back into the dict that goes into the shards."""
    with np.load(path, allow_pickle=False) as data:
        item: dict[str, Any] = {}
        for k in data.files:
            v = data[k]
            if k in BYTES_KEYS:
                item[k] = v.tobytes()
            elif k in STR_KEYS:
                item[k] = str(v)
            elif k in SCALAR_KEYS:
                item[k] = SCALAR_KEYS[k](v)
            else:
                item[k] = v
    return item


# --- shards (litdata chunks + index.json) ----------------------------------------------------------


def write_shards(segment_files: list[Path], output_dir: Path, meta: dict[str, Any], workers: int = 0,
                 chunk_bytes: str = "64MB") -> Path:
    """Pack staged segments into litdata shards at ``output_dir``, replacing what was there as a whole.

    Writes into a temporary sibling folder and renames it into place only when complete, so a killed
    run never leaves half-written shards under ``output_dir``.

    Args:
        segment_files: staged ``.npz`` segments, in the order they go into the shards.
        output_dir: final shard folder (litdata ``index.json`` + ``chunk-*.bin`` + :data:`SHARD_META`).
        meta: what the shards were built from (stored as :data:`SHARD_META`; compared on the next run).
        workers: 0 writes in this process with litdata's ``BinaryWriter``; N > 0 runs ``litdata.optimize``
            with N worker processes (same on-disk format; spawning costs seconds, worth it for big corpora).
        chunk_bytes: litdata chunk size.
    """
    if not segment_files:
        raise ValueError("no segments to write: every input was rejected (see the manifest)")
    tmp = output_dir.parent / f".{output_dir.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    if workers > 0:
        _optimize(segment_files, tmp, workers, chunk_bytes)
    else:
        _write_inline(segment_files, tmp, chunk_bytes)
    (tmp / SHARD_META).write_text(json.dumps(meta, indent=1, sort_keys=True))
    _swap_in(tmp, output_dir)
    return output_dir


def _write_inline(segment_files: list[Path], out: Path, chunk_bytes: str) -> None:
    from litdata.streaming.writer import BinaryWriter

    writer = BinaryWriter(str(out), chunk_bytes=chunk_bytes)
    for i, path in enumerate(segment_files):
        writer[i] = load_segment(path)
    writer.done()
    writer.merge(1)


def _optimize(segment_files: list[Path], out: Path, workers: int, chunk_bytes: str) -> None:
    import litdata

    # litdata wipes its cache folders at start; private ones keep parallel runs from deleting each other's.
    cache = out.parent / ".litdata-cache"
    env = {"DATA_OPTIMIZER_CACHE_FOLDER": str(cache / "chunks"), "DATA_OPTIMIZER_DATA_CACHE_FOLDER": str(cache / "data")}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        litdata.optimize(load_segment, [str(p) for p in segment_files], output_dir=str(out), num_workers=workers,
                         chunk_bytes=chunk_bytes, reorder_files=False, keep_data_ordered=True, verbose=False)
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
        shutil.rmtree(cache, ignore_errors=True)


def _swap_in(tmp: Path, final: Path) -> None:
    """Replace ``final`` by ``tmp``: two renames, so a reader sees the old or the new shards, never a mix."""
    old = final.parent / f".{final.name}.old-{os.getpid()}"
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def read_shard_meta(shards: str | os.PathLike) -> dict[str, Any] | None:
    """The :data:`SHARD_META` sidecar of a shard folder, or None when the folder is not complete."""
    path = Path(shards) / SHARD_META
    if not path.exists() or not (Path(shards) / "index.json").exists():
        return None
    return json.loads(path.read_text())

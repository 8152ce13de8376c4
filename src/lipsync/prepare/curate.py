"""One input file -> staged segments and its manifest record (the unit of work of ``prepare``).

Steps (Appendix A): decode at 25 fps; track the largest face, keeping a bounded patch around it per
frame, and, on the same pass, every face (``face_tracks``: each track's frames, box and mouth opening go
into the record, so a later rule such as "the speaker only" needs no second decoding); reject videos
whose face is always small; fill short face-less gaps and cut at long gaps or box jumps; drop clips
under 2 s; crop each clip around the face at the training resolution from the patches (frames whose
patch does not hold the final box are decoded again); run the model-based filters when their weights
exist; cut clips into segments and stage them.

Everything an input produces goes into ``staging/<video_id>/`` through a temporary folder renamed at
the end, with ``record.json`` inside: a folder either holds one input's complete result or does not
exist. Any failure becomes the record's reason; nothing here raises past :meth:`Curator.__call__`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from lipsync.data import shards
from lipsync.data.batch import to_model_range
from lipsync.data.face_tracks import FaceCollector, FaceTracks, box_iou, mouth_points
from lipsync.data.faces import Face, FaceBackend, FaceTrack
from lipsync.data.masks import MaskSpec
from lipsync.media import MODEL_FPS, MediaError, _open
from lipsync.prepare.crop import CropSpec
from lipsync.prepare.decode import read_audio_aligned, resampled_frames
from lipsync.prepare.filters import (Clip, ClipData, MinDuration, MinFaceSize, QualityFilter, SpeechFilter,
                                     SyncFilter, split_track)
from lipsync.prepare.patches import FacePatches

RECORD = "record.json"


def video_id(path: str | os.PathLike) -> str:
    """Stable id of a source file: its stem plus a hash of its absolute path (same stems never clash)."""
    p = Path(path).resolve()
    return f"{p.stem[:40]}-{hashlib.sha1(str(p).encode()).hexdigest()[:8]}"


def content_seed(path: str | os.PathLike) -> int:
    """A seed from the file's bytes: the same video curated from any folder draws the same random choices
    (a path-derived seed made two curations of one corpus train different models)."""
    with open(path, "rb") as f:
        return int(hashlib.file_digest(f, "sha1").hexdigest()[:8], 16)


def fingerprint(path: str | os.PathLike, config_hash: str) -> str:
    """Changes when the file or the curation settings change (then the input is curated again)."""
    st = Path(path).stat()
    return f"{st.st_size}-{st.st_mtime_ns}-{config_hash}"


@dataclass
class Encoders:
    """Frozen encoders whose outputs are cached in the shards (optional, issue 7).

    Attributes:
        audio: a ``WhisperAudioEncoder``; stores ``audio_feats`` (S, D) per segment.
        vae: a ``VideoVAE``; stores ``latents`` and, with ``mask``, ``masked_latents`` per segment.
        mask: the mask variant the masked latents are made with (must match training's).
    """

    audio: Any = None
    vae: Any = None
    mask: MaskSpec | None = None


@dataclass
class Curator:
    """Curates one input file into ``staging/<video_id>/`` (picklable; a worker builds its own models).

    Args:
        staging: folder of per-input results.
        faces: builds the face backend (a Hydra partial), called once per worker.
        min_face: whole-video face size filter.
        min_duration: clip length filter.
        speech: drops clips without sound in enough frames (no weights).
        quality, sync: model-based filters, run when their weights exist.
        crop: the stored crop.
        max_gap, max_shift, max_scale: clip cutting (see :func:`split_track`).
        segment_frames: target segment length (segments are 1x to 2x this).
        ref_pool: reference candidates stored per segment, drawn from the whole source video.
        fps, sample_rate: the model's clock (SPEC section 2).
        jpeg_quality: stored frame quality.
        face_tracks: also track every face and record the tracks (costs a detector pass and a mesh
            per face per frame with MediaPipe).
        patch_margin, patch_budget_mb: the face patches kept while tracking (see
            :class:`~lipsync.prepare.patches.FacePatches`); frames past the budget are decoded twice.
        encoders: builds frozen encoders whose outputs are cached in the shards (None: no caching).
        config_hash: hash of these settings, part of every input's fingerprint.
    """

    staging: Path
    faces: Callable[[], FaceBackend]
    min_face: MinFaceSize = field(default_factory=MinFaceSize)
    min_duration: MinDuration = field(default_factory=MinDuration)
    quality: QualityFilter = field(default_factory=QualityFilter)
    sync: SyncFilter = field(default_factory=SyncFilter)
    speech: SpeechFilter = field(default_factory=SpeechFilter)
    crop: CropSpec = field(default_factory=CropSpec)
    max_gap: int = 8
    max_shift: float = 0.3
    max_scale: float = 0.25
    segment_frames: int = 100
    ref_pool: int = 8
    fps: float = MODEL_FPS
    sample_rate: int = 16_000
    jpeg_quality: int = 95
    patch_margin: float = 1.3
    patch_budget_mb: float = 1024
    face_tracks: bool = True
    encoders: Callable[[], Encoders] | None = None
    config_hash: str = ""

    def __post_init__(self) -> None:
        self.staging = Path(self.staging)
        self._backend: FaceBackend | None = None
        self._encoders: Encoders | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_backend": None, "_encoders": None}

    def __call__(self, item: str, output_dir: str | None = None) -> None:
        """``litdata.map`` entry point: curate ``item`` unless it is already done."""
        if not self.is_done(item):
            self.curate(Path(item))

    def is_done(self, path: str | os.PathLike) -> bool:
        record = self.staging / video_id(path) / RECORD
        return record.exists() and json.loads(record.read_text()).get("fingerprint") == \
            fingerprint(path, self.config_hash)

    def curate(self, path: Path) -> dict:
        """Curate one file; always writes and returns its record (status ``ok``, ``rejected`` or ``error``)."""
        vid = video_id(path)
        out = self.staging / f".{vid}.partial-{os.getpid()}"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        record: dict[str, Any] = {"kind": "input", "path": str(path), "video_id": vid, "clips": []}
        try:
            record["fingerprint"] = fingerprint(path, self.config_hash)
            record.update(self._curate(path, vid, out))
        except MediaError as err:
            record.update(status="rejected", reason=str(err).replace(f"{path}: ", ""))
        except Exception as err:  # noqa: BLE001 - one bad file must not stop the batch; the trace is kept
            record.update(status="error", reason=f"{type(err).__name__}: {err}",
                          traceback=traceback.format_exc(limit=4))
        (out / RECORD).write_text(json.dumps(record, indent=1))
        final = self.staging / vid
        shutil.rmtree(final, ignore_errors=True)  # a stale result of a changed file
        os.replace(out, final)
        return record

    # --- the steps ------------------------------------------------------------------------------

    def _curate(self, path: Path, vid: str, out: Path) -> dict[str, Any]:
        _check_streams(path)
        patches = FacePatches(self.crop, self.patch_margin, budget_bytes=int(self.patch_budget_mb * 2 ** 20))
        rows, times, track, every = self._track(path, patches)
        info: dict[str, Any] = {"frames": len(rows), "duration_s": round(len(rows) / self.fps, 3),
                                "face_found": round(float(track.found.mean()), 3), "skipped_filters": []}
        if every is not None:
            info["face_tracks"], info["shot_cuts"] = track_records(every, track), every.cuts
        reason = self.min_face(track)
        if reason:
            return {**info, "status": "rejected", "reason": reason}
        filled, clips = split_track(track, self.max_gap, self.max_shift, self.max_scale)
        kept, rows_info = self._length_filter(clips)
        audio = read_audio_aligned(path, times[0], len(rows) * shards.SAMPLES_PER_FRAME, self.sample_rate)
        crops, info["frames_decoded_twice"] = self._crop_pass(path, filled, kept, patches)
        info["patch_mb"] = round(patches.nbytes / 2 ** 20, 1)
        del patches  # the crops are cut: free the patches before the filters and encoders run
        kept = self._model_filters(kept, crops, audio, rows_info, info)
        if not kept:
            first = next((c["reason"] for c in rows_info if c["reason"]), "no clip")
            return {**info, "status": "rejected", "reason": f"no clip kept ({len(rows_info)} clips; e.g. {first})",
                    "clips": rows_info}
        items = self._segments(vid, path, kept, crops, filled, audio, times)
        for item in items:
            shards.save_segment(out / f"{item['start_frame']:06d}.npz", item)
        return {**info, "status": "ok", "reason": None, "clips": rows_info, "segments": len(items)}

    def _track(self, path: Path, patches: FacePatches
               ) -> tuple[np.ndarray, np.ndarray, FaceTrack, FaceTracks | None]:
        rows, times = [], []
        if self._backend is None:
            self._backend = self.faces()
        every = FaceCollector(self._backend, path, mouth_points, chunk=32) if self.face_tracks else None

        def frames():
            held = None  # the frame the tracker is on: its face is known once the tracker asks for the next
            for index, t, image in resampled_frames(path, self.fps):
                if held is not None:
                    patches.add(len(rows) - 1, held)
                rows.append(index)
                times.append(t)
                held = image
                if every is not None:
                    every.push(index, image)
                yield index, image
            if held is not None:
                patches.add(len(rows) - 1, held)

        def on_face(face: Face | None) -> None:
            if face is not None:
                patches.face = face.box

        track = self._backend.track(path, frames(), on_face)
        if not rows:
            raise MediaError(f"{path}: no video frames decoded")
        return np.array(rows), np.array(times), track, None if every is None else every.result()

    def _length_filter(self, clips: list[Clip]) -> tuple[list[tuple[int, Clip]], list[dict]]:
        kept, rows_info = [], []
        for i, clip in enumerate(clips):
            reason = self.min_duration.check(len(clip))
            rows_info.append({"kind": "clip", "clip": i, "start": clip.start, "stop": clip.stop,
                              "start_s": round(clip.start / self.fps, 3), "cut_before": clip.cut,
                              "status": "dropped" if reason else "kept", "reason": reason})
            if reason is None:
                kept.append((i, clip))
        return kept, rows_info

    def _crop_pass(self, path: Path, filled: FaceTrack, kept: list[tuple[int, Clip]],
                   patches: FacePatches) -> tuple[dict[int, dict], int]:
        """JPEG crops, crop boxes and crop-space landmarks of every kept clip, cut from the face patches
        or, for the frames whose patch does not hold the final box, from a second decoding pass (counted)."""
        out = {}
        wanted = {}  # row -> (clip, row in clip) still to crop from a decoded frame
        for i, clip in kept:
            boxes = self.crop.boxes(filled.boxes[clip.start:clip.stop])
            out[i] = {"crop_boxes": boxes, "jpegs": [None] * len(clip),
                      "landmarks": self.crop.to_crop(filled.landmarks[clip.start:clip.stop], boxes),
                      "boxes": self.crop.to_crop(filled.boxes[clip.start:clip.stop].reshape(-1, 2, 2),
                                                 boxes).reshape(-1, 4)}
            for r, row in enumerate(range(clip.start, clip.stop)):
                crop = patches.crop(row, boxes[r])
                if crop is None:
                    wanted[row] = (i, r)
                else:
                    out[i]["jpegs"][r] = shards.encode_jpeg(crop, self.jpeg_quality)
        decoded_twice = len(wanted)
        if wanted:
            self._decode_again(path, wanted, out)
        return out, decoded_twice

    def _decode_again(self, path: Path, wanted: dict[int, tuple[int, int]], out: dict[int, dict]) -> None:
        """Second decoding pass up to the last wanted row, cropping the ``wanted`` rows."""
        last = max(wanted)
        for row, (_, _, image) in enumerate(resampled_frames(path, self.fps)):
            if row > last:
                break
            if row in wanted:
                i, r = wanted.pop(row)
                out[i]["jpegs"][r] = shards.encode_jpeg(self.crop.crop(image, out[i]["crop_boxes"][r]),
                                                        self.jpeg_quality)
        if wanted:
            raise MediaError(f"{path}: second decoding pass ended before frame {min(wanted)} ({len(wanted)} "
                             "frames of the kept clips missing; file changed during curation?)")

    def _model_filters(self, kept: list[tuple[int, Clip]], crops: dict[int, dict], audio: np.ndarray,
                       rows_info: list[dict], info: dict) -> list[tuple[int, Clip]]:
        active = []
        for f in (self.speech, self.quality, self.sync):
            skip = f.skip_reason()
            if skip:
                info["skipped_filters"].append(skip)
            else:
                active.append(f)
        survivors = []
        for i, clip in kept:
            reason = None
            if active:
                data = ClipData(self._decoded(crops[i]), crops[i]["boxes"],
                                audio[clip.start * shards.SAMPLES_PER_FRAME:clip.stop * shards.SAMPLES_PER_FRAME])
                reason = next((r for r in (f(data) for f in active) if r), None)
            if reason:
                rows_info[i].update(status="dropped", reason=reason)
            else:
                survivors.append((i, clip))
        return survivors

    @staticmethod
    def _decoded(crop: dict) -> np.ndarray:
        blob, offsets = shards.pack_blobs(crop["jpegs"])
        return shards.decode_jpegs(blob, offsets, range(len(offsets) - 1))

    def _segments(self, vid: str, path: Path, kept: list[tuple[int, Clip]], crops: dict[int, dict],
                  filled: FaceTrack, audio: np.ndarray, times: np.ndarray) -> list[dict]:
        refs = self._reference_pool(content_seed(path), kept, crops)
        layout = filled.layout
        items = []
        for i, clip in kept:
            c = crops[i]
            for a, b in segment_bounds(len(clip), self.segment_frames):
                blob, offsets = shards.pack_blobs(c["jpegs"][a:b])
                start = clip.start + a
                items.append({
                    "key": f"{vid}/{i:03d}/{start:06d}", "video_id": vid, "source": json.dumps({"path": str(path)}),
                    "frames": blob, "frame_offsets": offsets,
                    "landmarks": c["landmarks"][a:b], "boxes": c["boxes"][a:b], "crop_boxes": c["crop_boxes"][a:b],
                    "audio": audio[start * shards.SAMPLES_PER_FRAME:(clip.start + b) * shards.SAMPLES_PER_FRAME],
                    "start_frame": start, "start_time": float(times[start]),
                    "layout": layout.kind, "mouth_idx": layout.mouth_idx, "lower_face_idx": layout.lower_face_idx,
                    **refs,
                })
        return [self._encode(item) for item in items]

    def _reference_pool(self, seed: int, kept: list[tuple[int, Clip]], crops: dict[int, dict]) -> dict[str, Any]:
        """``ref_pool`` frames drawn uniformly (seeded by the file's content) from every kept clip."""
        everything = [(i, r) for i, clip in kept for r in range(len(clip))]
        rng = np.random.default_rng(seed)
        picks = rng.choice(len(everything), size=self.ref_pool, replace=len(everything) < self.ref_pool)
        chosen = [everything[p] for p in sorted(picks)]
        blob, offsets = shards.pack_blobs([crops[i]["jpegs"][r] for i, r in chosen])
        landmarks = np.stack([crops[i]["landmarks"][r] for i, r in chosen])
        return {"ref_frames": blob, "ref_offsets": offsets, "ref_landmarks": landmarks}

    def _encode(self, item: dict) -> dict:
        """Add the cached encodings (audio features, VAE latents) when encoders are configured."""
        if self.encoders is None:
            return item
        if self._encoders is None:
            self._encoders = self.encoders()
        enc = self._encoders
        if enc.audio is not None:
            item["audio_feats"] = enc.audio(item["audio"])[0].float().numpy()
        if enc.vae is not None:
            item.update(encode_latents(item, enc.vae, enc.mask))
        return item


def encode_latents(item: dict, vae: Any, mask: MaskSpec | None) -> dict[str, np.ndarray]:
    """VAE latents of a segment's stored (JPEG-decoded) frames and, given a mask, of the masked frames.

    Returns ``latents`` (N, C, h, w) float32 and optionally ``masked_latents`` plus ``mask_spec`` (the
    mask's repr, checked by the datamodule so cached masked latents never meet another mask).
    """
    import torch

    n = shards.num_frames(item)
    frames = shards.decode_jpegs(item["frames"], item["frame_offsets"], range(n))
    video = to_model_range(torch.from_numpy(frames).permute(0, 3, 1, 2))[None]  # (1, N, 3, H, W)
    out = {"latents": vae.encode(video)[0].float().numpy()}
    if mask is not None:
        m = torch.from_numpy(mask(item["landmarks"], shards.layout_of(item), *frames.shape[1:3]))[None]
        out["masked_latents"] = vae.encode(video * (1 - m))[0].float().numpy()
        out["mask_spec"] = repr(mask)
    return out


def segment_bounds(length: int, target: int) -> list[tuple[int, int]]:
    """Split ``length`` frames into ``max(1, length // target)`` near-equal segments (each >= target)."""
    n = max(1, length // target)
    edges = np.linspace(0, length, n + 1).round().astype(int)
    return list(zip(edges[:-1].tolist(), edges[1:].tolist()))


def track_records(tracks: FaceTracks, curated: FaceTrack) -> list[dict]:
    """Every face track for the manifest: :meth:`FaceTracks.summary` plus, per frame (``null`` where
    absent), the mouth opening (3 decimals), and ``curated``: the fraction of its frames where it is the
    face that was curated (box IoU >= 0.5)."""
    openings = tracks.openings()
    rows = []
    for row in tracks.summary():
        m = row["track"]
        seen = np.flatnonzero(tracks.present[:, m])
        same = [curated.found[n] and box_iou(tracks.boxes[n, m], curated.boxes[n])[0, 0] >= 0.5 for n in seen]
        row["curated"] = round(float(np.mean(same)), 3)
        row["opening"] = [None if np.isnan(v) else round(float(v), 3) for v in openings[:, m]]
        rows.append(row)
    return rows


def _check_streams(path: Path) -> None:
    """Reject before the expensive face pass: the file must hold a video and an audio stream."""
    with _open(path) as container:
        if not container.streams.video:
            raise MediaError(f"{path}: has no video stream")
        if not container.streams.audio:
            raise MediaError(f"{path}: has no audio stream")


def curate_inline(curator: Curator, inputs: Sequence[str], progress: bool = True) -> None:
    """Curate inputs one after another in this process (``workers=0``: debugging, tests)."""
    from tqdm import tqdm

    for item in tqdm(inputs, desc="curate", unit="video", disable=not progress):
        curator(item)

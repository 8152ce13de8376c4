"""Prepare decodes each video once: the face patches kept while tracking give the crops a second
decoding pass gives (carphone, a real face), and the second pass still covers what they cannot."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest

from _data_corpus import prepare_config, speech
from lipsync import media
from lipsync.assets import asset_path, ensure_assets
from lipsync.data import shards
from lipsync.data.faces import MediaPipeFaces, crop_square
from lipsync.prepare.crop import CropSpec
from lipsync.prepare.patches import FacePatches


@pytest.fixture(scope="module")
def carphone_2x(tmp_path_factory) -> Path:
    """Carphone scaled 2x (352x288, 29.97 fps, 4 s) with speech: its 320 px crops come from ~200 px."""
    ensure_assets()
    src = asset_path("carphone_pristine.mp4")
    frames = [cv2.resize(f, (352, 288), interpolation=cv2.INTER_CUBIC) for f in media.read_frames(src)]
    fps = media.probe(src).fps
    path = tmp_path_factory.mktemp("patches") / "carphone_2x.mp4"
    return media.write_video(path, frames, fps=fps, audio=speech(len(frames) / float(fps)), audio_rate=16000)


@pytest.fixture(scope="module")
def carphone_track() -> tuple[np.ndarray, np.ndarray]:
    """Carphone's first 40 frames and their (N, 4) face boxes."""
    ensure_assets()
    frames = media.read_frames(asset_path("carphone_pristine.mp4"), stop=40)
    track = MediaPipeFaces().track(Path("carphone"), enumerate(frames))
    assert track.found.all()
    return frames, track.boxes


def _curate(video: Path, out: Path, **fields) -> tuple[dict, list[dict]]:
    """Curate ``video`` with 320 px crops (the training resolution) and the Curator ``fields`` given."""
    from lipsync.prepare.__main__ import build_curator

    cfg = prepare_config(video.parent, out, "crop.resolution=320")
    curator = dataclasses.replace(build_curator(cfg), **fields)
    record = curator.curate(video)
    assert record["status"] == "ok", record
    return record, [dict(np.load(p)) for p in sorted((curator.staging / record["video_id"]).glob("*.npz"))]


def _frames(segment: dict) -> np.ndarray:
    return shards.decode_jpegs(segment["frames"], segment["frame_offsets"], range(shards.num_frames(segment)))


def test_one_decoding_pass_gives_the_crops_of_two(carphone_2x: Path, tmp_path: Path) -> None:
    one, got = _curate(carphone_2x, tmp_path / "one")
    two, want = _curate(carphone_2x, tmp_path / "two", patch_budget_mb=0)  # no patches: all decoded twice
    kept = sum(c["stop"] - c["start"] for c in one["clips"] if c["status"] == "kept")
    assert one["frames_decoded_twice"] == 0 and 0 < one["patch_mb"] < one["frames"] * 3 * 480 ** 2 / 2 ** 20
    assert two["frames_decoded_twice"] == kept > 0
    # a budget for about half the patches: the rest come from a second pass, in the right places
    part, mixed = _curate(carphone_2x, tmp_path / "part", patch_budget_mb=one["patch_mb"] / 2)
    assert 0 < part["frames_decoded_twice"] < kept
    assert [s["key"] for s in got] == [s["key"] for s in mixed] == [s["key"] for s in want]
    for a, b, c in zip(got, mixed, want):
        for key in ("landmarks", "boxes", "crop_boxes", "audio", "ref_landmarks"):
            np.testing.assert_array_equal(a[key], c[key])
        x, y, z = (_frames(s).astype(int) for s in (a, b, c))
        assert x.shape == y.shape == z.shape == (len(x), 320, 320, 3)
        # patches at full size: the same pixels, up to float rounding in the crop's affine map
        assert np.abs(x - z).mean() < 0.1 and np.abs(y - z).mean() < 0.1


def test_patch_crops_match_whole_frame_crops(carphone_track) -> None:
    frames, faces = carphone_track
    # 320: patches at full size, the same pixels. 64: patches shrunk to max_side (96 px) first; resampling
    # twice aliases a x0.7 downscale differently from resampling once (not worse: both sit ~7 levels from
    # an antialiased crop): ~2.3 levels on average at this tiny size, 0.7 on 1280 px carphone's 320 px crops.
    for resolution, tolerance in ((320, 0.05), (64, 3.0)):
        spec = CropSpec(resolution=resolution)
        patches = FacePatches(spec)
        for row, (frame, face) in enumerate(zip(frames, faces)):
            patches.face = faces[max(row - 1, 0)]  # the face reported one frame late, as in prepare
            patches.add(row, frame)
        assert len(patches) == len(frames) and patches.nbytes <= len(frames) * 3 * patches.max_side ** 2
        boxes = spec.boxes(faces)
        diff = [np.abs(patches.crop(r, b).astype(int) - crop_square(f, b, resolution)).mean()
                for r, (f, b) in enumerate(zip(frames, boxes))]
        assert max(diff) < tolerance, (resolution, max(diff))


def test_patches_keep_black_beyond_the_frame_and_refuse_what_they_miss(carphone_track) -> None:
    frames, faces = carphone_track
    frame = frames[0]
    spec = CropSpec(resolution=128)
    patches = FacePatches(spec, budget_bytes=3 * 3 * FacePatches(spec).max_side ** 2)  # room for 3 patches
    corner = np.array([-30, -20, 50, 60], np.float32)  # a face at the top-left corner, partly outside
    patches.face = corner
    for row in range(5):
        patches.add(row, frame)
    assert len(patches) == 3  # the budget is spent after 3
    box = spec.boxes(corner[None])[0]
    assert box[0] < 0 and box[1] < 0
    np.testing.assert_array_equal(patches.crop(0, box), crop_square(frame, box, 128))  # black where outside
    assert patches.crop(0, box + 60) is None  # a box the patch does not hold: decode again
    assert patches.crop(4, box) is None  # past the budget
    with pytest.raises(ValueError, match="margin must be >= 1"):
        FacePatches(spec, margin=0.9)


@pytest.mark.parametrize("mesh_every", [1, 2])
def test_mediapipe_reports_each_face_before_reading_the_next_frame(carphone_track, mesh_every: int) -> None:
    """What the patches rely on: the face of a frame is known while the frame is still at hand."""
    frames, _ = carphone_track
    reported, at_request = [], []

    def given():
        for i, frame in enumerate(frames[:12]):
            at_request.append(len(reported))
            yield i, frame

    track = MediaPipeFaces(mesh_every=mesh_every).track(Path("carphone"), given(), reported.append)
    assert len(reported) == len(track) == 12
    # frame i is asked for once frames < i are reported (mesh_every=2: all but a skipped frame i - 1)
    assert all(n >= i - (mesh_every - 1) for i, n in enumerate(at_request))
    np.testing.assert_array_equal(np.stack([f.box for f in reported]), track.boxes)

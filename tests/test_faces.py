"""Face backends on real faces (carphone, astronaut), noise, landmark files, and the missing-pack error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from _data_corpus import astronaut_frames
from lipsync import media
from lipsync.assets import asset_path, ensure_assets
from lipsync.data.faces import (MEDIAPIPE_478, FaceTrack, InsightFaceFaces, LandmarkLayout, LandmarksFileFaces,
                                MediaPipeFaces, crop_square, get_layout, landmarks_file)
from lipsync.data.masks import AdaptiveMask
from lipsync.media import MediaError


@pytest.fixture(scope="module")
def carphone_track() -> tuple[np.ndarray, FaceTrack]:
    ensure_assets()
    frames = media.read_frames(asset_path("carphone_pristine.mp4"), stop=30)
    return frames, MediaPipeFaces(detect_every=10).track(Path("carphone"), enumerate(frames))


def test_mediapipe_tracks_the_real_face_with_478_points(carphone_track) -> None:
    frames, track = carphone_track
    assert len(track) == 30 and track.found.all() and track.landmarks.shape == (30, 478, 2)
    lm, box = track.landmarks, track.boxes
    # the face sits in the middle of the 176x144 frame and spans a plausible size
    assert ((box[:, 2] - box[:, 0]) > 40).all() and ((box[:, 2] - box[:, 0]) < 140).all()
    # anatomy: lips below the eyes (33, 263) and above the chin (152), between the cheeks (234, 454)
    lips_y = lm[:, MEDIAPIPE_478.mouth_idx, 1].mean(1)
    assert (lips_y > lm[:, [33, 263], 1].mean(1)).all() and (lips_y < lm[:, 152, 1]).all()
    lips_x = lm[:, MEDIAPIPE_478.mouth_idx, 0].mean(1)
    assert (lips_x > lm[:, 234, 0]).all() and (lips_x < lm[:, 454, 0]).all()
    # frame-to-frame landmarks move smoothly (tracking, not a new random face each frame)
    assert np.abs(np.diff(lm, axis=0)).mean() < 3.0


def test_mask_from_real_landmarks_covers_mouth_and_jaw_not_eyes(carphone_track) -> None:
    frames, track = carphone_track
    h, w = frames.shape[1:3]
    masks = AdaptiveMask()(track.landmarks, track.layout, h, w)[:, 0]
    for t in range(0, 30, 7):
        lips = track.landmarks[t, MEDIAPIPE_478.mouth_idx].round().astype(int)
        assert masks[t, lips[:, 1].clip(0, h - 1), lips[:, 0].clip(0, w - 1)].all()
        chin = track.landmarks[t, 152].astype(int)
        assert masks[t, min(chin[1] - 1, h - 1), chin[0]] == 1
        eye = track.landmarks[t, 33].astype(int)
        assert masks[t, eye[1], eye[0]] == 0


def test_mesh_every_second_frame_moves_the_mask_by_about_a_pixel(carphone_track) -> None:
    frames, track = carphone_track
    fast = MediaPipeFaces(mesh_every=2).track(Path("carphone"), enumerate(frames))
    assert fast.found.all()
    mask = AdaptiveMask()
    exact, approx = (mask.boxes(t.landmarks, t.layout, 144, 176) for t in (track, fast))
    # 176 px frame here: the 320 px training crop scales this about 2.5x
    assert np.abs(exact - approx).mean() < 0.8 and np.abs(exact - approx).max() < 4


def test_mediapipe_finds_the_astronaut_and_no_face_in_noise() -> None:
    faces = MediaPipeFaces()
    track = faces.track(Path("astronaut"), enumerate(astronaut_frames(6)))
    assert track.found.all()
    noise = np.random.default_rng(0).integers(0, 255, (4, 96, 96, 3), dtype=np.uint8)
    assert not faces.track(Path("noise"), enumerate(noise)).found.any()


def test_mediapipe_lip_indices_are_facemesh_lips() -> None:
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_LIPS

    assert set(MEDIAPIPE_478.mouth_idx.tolist()) == {i for edge in FACEMESH_LIPS for i in edge}


def test_landmarks_file_round_trip_and_backend(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    lm = rng.uniform(0, 100, (10, 68, 2)).astype(np.float32)
    lm[3] = np.nan
    boxes = np.concatenate([lm.min(1), lm.max(1)], axis=1)
    video = tmp_path / "talk.mp4"
    FaceTrack(boxes, lm, get_layout("ibug68")).save(landmarks_file(video))
    assert landmarks_file(video).name == "talk.mp4.landmarks.npz"
    stored = FaceTrack.load(landmarks_file(video))
    assert stored.layout.kind == "ibug68" and not stored.found[3] and stored.found.sum() == 9
    # the backend picks rows by source frame index (a resampled stream repeats or skips frames)
    track = LandmarksFileFaces().track(video, [(0, None), (0, None), (2, None), (9, None)])
    np.testing.assert_array_equal(track.landmarks[[0, 1, 2, 3]], lm[[0, 0, 2, 9]])
    with pytest.raises(MediaError, match="holds 10 frames"):
        LandmarksFileFaces().track(video, [(10, None)])
    with pytest.raises(MediaError, match="no landmarks file"):
        LandmarksFileFaces().track(tmp_path / "other.mp4", [(0, None)])


def test_custom_layout_by_index_arrays(tmp_path: Path) -> None:
    layout = LandmarkLayout("custom", np.array([0, 1]), np.array([2, 3, 4]))
    lm = np.arange(20, dtype=np.float32).reshape(2, 5, 2)
    FaceTrack(np.zeros((2, 4)), lm, layout).save(tmp_path / "x.npz")
    back = FaceTrack.load(tmp_path / "x.npz")
    np.testing.assert_array_equal(back.layout.lower_face_idx, [2, 3, 4])
    with pytest.raises(ValueError, match="unknown landmark layout"):
        get_layout("dlib5")
    with pytest.raises(ValueError, match="indexes 68 points"):
        FaceTrack(np.zeros((1, 4)), np.zeros((1, 10, 2)), get_layout("ibug68"))


def test_insightface_without_model_pack_names_path_and_config_key(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"buffalo_l.*faces\.root"):
        InsightFaceFaces(root=str(tmp_path))


def test_crop_square_keeps_out_of_frame_pixels_black() -> None:
    frame = np.full((40, 40, 3), 200, np.uint8)
    crop = crop_square(frame, np.array([-20, -20, 20, 20], np.float32), 20)
    assert crop[:8, :8].max() == 0 and crop[12:, 12:].min() == 200

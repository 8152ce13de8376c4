"""``options.face=speaker`` on real faces: the mouth-from-audio predictor (closed form, the shipped weights),
then one real two-person scene built from the realfaces corpus (``../shared/realfaces``, next to the
repository; the test says so in one line and skips where that folder is absent).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from lipsync.evaluate.real_scenes import HELD_OUT
from lipsync.infer.mouth_from_audio import CONTEXT, MouthFromAudio, frame_features, shipped

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "realfaces"


def test_ridge_fit_recovers_a_linear_map_per_clip_z_scored(tmp_path: Path) -> None:
    """Openings that are a linear map of the features (each clip at its own scale and offset, some frames
    without a face) are predicted with r ~ 1, and the weights survive a save and load."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal(6)
    features = [rng.standard_normal((200, 6)) for _ in range(3)]
    openings = [2.0 + (k + 1) * f @ w for k, f in enumerate(features)]
    openings[0][:10] = np.nan
    model = MouthFromAudio.fit(features, openings, alpha=1e-6, names=["a", "b", "c"])
    assert np.corrcoef(model(features[1]), openings[1])[0, 1] == pytest.approx(1.0, abs=1e-3)
    again = MouthFromAudio.load(model.save(tmp_path / "m.npz"))
    np.testing.assert_allclose(again(features[2]), model(features[2]), rtol=1e-4, atol=1e-4)
    assert again.trained_on == ("a", "b", "c")


@pytest.mark.parametrize("fps", [25.0, 30.0])
def test_frame_features_match_the_shipped_weights_which_never_saw_a_held_out_person(fps: float) -> None:
    wave = np.random.default_rng(1).standard_normal(16_000).astype(np.float32) * 0.1
    features = frame_features(wave, fps, int(fps))
    assert features.shape == (int(fps), (2 * CONTEXT + 1) * 384) and np.isfinite(features).all()
    model = shipped()
    assert model.weights.shape == (features.shape[1],) and model(features).shape == (int(fps),)
    assert model.trained_on and not set(model.trained_on) & set(HELD_OUT)


def test_composed_scene_truth_and_shot_outcomes_on_hand_made_clips_and_choices() -> None:
    """Two "clips" (flat colours, two tones): the cut, the tiles, whose sound is heard, and one outcome
    per true shot: the speaker dubbed, the other dubbed, an announced fallback."""
    from lipsync.data.face_tracks import FaceTracks
    from lipsync.data.faces import LandmarkLayout
    from lipsync.evaluate.real_scenes import SAMPLES_PER_FRAME, WORK_SIZE, Clip, Shot, compose, shot_outcomes
    from lipsync.infer.face_choice import FaceSelection, ShotDecision

    t = np.arange(40 * SAMPLES_PER_FRAME) / 16_000
    clips = {n: Clip(n, np.full((40, WORK_SIZE, WORK_SIZE, 3), v, np.uint8), np.sin(f * t).astype(np.float32))
             for n, v, f in (("a", 50, 1000.0), ("b", 200, 2000.0))}
    shots = [Shot(("a", "b"), (100, 200), 0, 0, 10), Shot(("b", "a"), (100, 200), 0, 10, 12),
             Shot(("a", "b"), (150, 100), 1, 22, 8)]
    scene = compose(shots, clips)
    assert scene.frames.shape == (30, 288, 512, 3) and scene.cuts == (10, 22)
    np.testing.assert_array_equal(scene.speaker, np.repeat([0, 0, 1], [10, 12, 8]))
    np.testing.assert_array_equal(scene.tiles[0], [[16, 188, 116, 288], [296, 88, 496, 288]])
    assert scene.frames[0, 200, 50, 0] == 50 and scene.frames[15, 200, 50, 0] == 200  # a left, then b left
    np.testing.assert_allclose(scene.wave[SAMPLES_PER_FRAME * 12:SAMPLES_PER_FRAME * 13],
                               clips["b"].wave[SAMPLES_PER_FRAME * 12:SAMPLES_PER_FRAME * 13])  # b heard
    lips = LandmarkLayout("custom", [0], [0])
    tracks = FaceTracks(scene.tiles.copy(), np.zeros((30, 2, 4, 2), np.float32), lips, [10, 22])
    chosen = np.repeat([0, 1, 0], [10, 12, 8])
    scores = {0: 0.6, 1: 0.1}
    decisions = [ShotDecision(0, 0, 10, 0, "speaker", scores), ShotDecision(1, 10, 22, 1, "speaker", scores),
                 ShotDecision(2, 22, 30, 0, "largest", scores, note="no clear speaker")]
    outcomes = shot_outcomes(FaceSelection(tracks, chosen, decisions), scene.tiles, scene.speaker, scene.cuts)
    assert [o.outcome for o in outcomes] == ["correct", "wrong", "fallback"]
    assert [o.on_speaker for o in outcomes] == [1.0, 0.0, 0.0] and all(o.dubbed == 1.0 for o in outcomes)
    assert (outcomes[0].speaker_score, outcomes[0].other_score) == (0.6, 0.1)


def test_real_two_person_scene_dubs_the_small_speaker_not_the_large_muted_talker(tmp_path: Path) -> None:
    """Issue 26's case on two tuning people: the small face speaks with its own sound, the large one talks
    to muted speech; ``speaker`` must dub the small one and say so in one line."""
    if not CORPUS.is_dir():
        pytest.skip(f"no real-face corpus at {os.path.relpath(CORPUS)} (../shared/realfaces): "
                    "real two-person scene not tested")
    from lipsync.data.faces import MediaPipeFaces
    from lipsync.evaluate.real_scenes import Shot, compose, load_clip, shot_outcomes, write_real_scene
    from lipsync.infer.face_choice import choose_face

    clips = {c.name: c for c in map(load_clip, (CORPUS / "voxceleb2_pcavs_00015.mp4",
                                               CORPUS / "voxceleb2_pcavs_00473.mp4"))}
    shot = Shot(("voxceleb2_pcavs_00015.mp4", "voxceleb2_pcavs_00473.mp4"), (140, 240), 0, 0, 100)
    scene = compose([shot], clips)
    video = write_real_scene(scene, tmp_path / "scene.mp4")
    selection = choose_face(iter(scene.frames), MediaPipeFaces(), video, 25.0, "speaker")
    [outcome] = shot_outcomes(selection, scene.tiles, scene.speaker, scene.cuts)
    assert outcome.outcome == "correct" and outcome.dubbed > 0.9, outcome
    assert outcome.line.startswith("shot 0 (frames 0-99): dubbing track ")
    assert "moves with the sound" in outcome.line

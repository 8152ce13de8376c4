"""The synthetic world: espeak-ng speech, the audio -> opening map, the renderer and the corpus files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lipsync import media
from lipsync.cli import config_dir
from lipsync.data.faces import IBUG_68, FaceTrack, LandmarksFileFaces
from lipsync.synth import corpus, render, speech

pytestmark = pytest.mark.usefixtures("espeak")  # fails loudly without espeak-ng (tests/conftest.py)


# --- speech and the renderer's truth ---------------------------------------------------------------


def test_speech_clip_is_exact_length_deterministic_and_audible() -> None:
    a = speech.speech_clip(1.5, np.random.default_rng(3))
    b = speech.speech_clip(1.5, np.random.default_rng(3))
    assert a.wave.shape == (24_000,) and a.wave.dtype == np.float32
    np.testing.assert_array_equal(a.wave, b.wave)
    assert 0.1 < np.abs(a.wave).max() <= 1.0
    assert a.sentences and all(s in speech.SENTENCES for s in a.sentences)


def test_every_voice_language_is_installed() -> None:
    voice = speech.Voice("en-us", 170, 50)
    for language in speech.LANGUAGES:
        assert speech.synthesize("hello", speech.Voice(language + "+f3", voice.rate, voice.pitch)).size > 1000


def test_opening_is_closed_for_silence_and_follows_loudness() -> None:
    hop = 640  # 16 kHz / 25 fps
    assert not speech.mouth_opening_from_audio(np.zeros(16_000, np.float32), 25).any()
    # Frames 10-19 loud, 20-29 at -12 dB, the rest silent: open, half open, closed.
    t = np.arange(40 * hop) / 16_000
    amp = np.zeros(40 * hop)
    amp[10 * hop:20 * hop], amp[20 * hop:30 * hop] = 0.5, 0.5 * 10 ** (-12 / 20)
    opening = speech.mouth_opening_from_audio((amp * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 40)
    assert opening.shape == (40,) and opening.dtype == np.float32
    assert opening[12:18].min() > 0.95 and opening[:8].max() == 0 and opening[32:].max() == 0
    # 12 dB below the reference on a 30 dB scale with a 20% floor: (1 - 12/30 - 0.2) / 0.8 = 0.5.
    np.testing.assert_allclose(opening[22:28], 0.5, atol=0.02)


def test_opening_pads_short_audio_and_rejects_bad_input() -> None:
    loud = (0.5 * np.sin(np.arange(8000) / 3)).astype(np.float32)  # 0.5 s = 12.5 frames
    opening = speech.mouth_opening_from_audio(loud, 25)
    assert opening[:11].min() > 0.9 and opening[14:].max() == 0
    with pytest.raises(ValueError, match="mono"):
        speech.mouth_opening_from_audio(np.zeros((2, 100)), 5)
    with pytest.raises(ValueError, match="num_frames"):
        speech.mouth_opening_from_audio(loud, 0)


# --- renderer ----------------------------------------------------------------------------------------


def _still(ident: render.Identity, openings: list[float], size: int = 96) -> render.RenderedVideo:
    n = len(openings)
    zeros = np.zeros(n)
    still = render.Motion(tx=zeros, ty=zeros, angle=zeros, scale=np.ones(n), blink=zeros)
    return render.render_video(ident, still, np.array(openings), size=size)


def test_lower_face_moves_with_the_mouth() -> None:
    ident = render.sample_identity(np.random.default_rng(1))
    v = _still(ident, [0.0, 0.5, 1.0])
    lm = v.landmarks
    gap = lm[:, 66, 1] - lm[:, 62, 1]  # inner lower lip minus inner upper lip
    assert gap[0] == pytest.approx(0.0, abs=1e-4) and gap[1] > 1.0 and gap[2] > gap[1]
    assert np.all(np.diff(lm[:, 8, 1]) > 0.5)  # the chin drops
    assert np.all(np.diff(lm[:, render.LEFT_CHEEK, 1]) > 0.05)  # so do the cheeks
    assert np.all(np.diff(v.boxes[:, 3]) > 0.5)  # and the face box bottom
    # The nose stays.
    np.testing.assert_allclose(lm[:, 27:31], np.broadcast_to(lm[:1, 27:31], (3, 4, 2)), atol=1e-4)
    # The pixels change in the lower face and not in the forehead.
    diff = np.abs(v.frames[2].astype(int) - v.frames[0].astype(int)).sum(-1)
    x0, y0, x1, y1 = v.boxes[0].astype(int)
    assert diff[(y0 + y1) // 2:y1, x0:x1].sum() > 50 * diff[y0:(y0 + y1) // 2, x0:x1].sum()


def test_blink_closes_the_eyes() -> None:
    ident = render.sample_identity(np.random.default_rng(2))
    bg = render.make_background(ident, 192)
    open_eye, *_ = render.render_frame(ident, bg, 0.0, 0.0, render.Pose(), 96)
    shut_eye, lm, _ = render.render_frame(ident, bg, 0.0, 1.0, render.Pose(), 96)
    x0, y0 = np.floor(lm[36:42].min(0)).astype(int)
    x1, y1 = np.ceil(lm[36:42].max(0)).astype(int) + 1
    white = lambda f: (f[y0:y1, x0:x1].min(-1) > 200).sum()  # eye-white pixels
    assert white(open_eye) > 3 and white(shut_eye) == 0


def test_identities_differ_and_rendering_is_deterministic() -> None:
    people = [render.sample_identity(np.random.default_rng(s)) for s in range(6)]
    assert len({p.skin for p in people}) == 6 and len({p.hair_style for p in people}) > 2
    assert all(render._luma(p.skin) >= render.SKIN_MIN_LUMA for p in people)
    a, b = _still(people[0], [0.3], 64), _still(people[0], [0.3], 64)
    np.testing.assert_array_equal(a.frames, b.frames)
    c = _still(people[1], [0.3], 64)
    assert np.abs(a.frames.astype(int) - c.frames.astype(int)).mean() > 10


def test_render_rejects_bad_input() -> None:
    ident = render.sample_identity(np.random.default_rng(0))
    with pytest.raises(ValueError, match="opening"):
        render.render_frame(ident, render.make_background(ident, 128), 1.5, 0.0, render.Pose(), 64)
    with pytest.raises(ValueError, match="background"):
        render.render_frame(ident, render.make_background(ident, 64), 0.5, 0.0, render.Pose(), 64)
    with pytest.raises(ValueError, match="opening must be"):
        render.render_video(ident, render.sample_motion(np.random.default_rng(0), 5), np.zeros(4))


# --- corpus files ------------------------------------------------------------------------------------


def test_corpus_writes_video_audio_and_landmarks_file(tmp_path) -> None:
    summary = corpus.render_corpus(tmp_path, num_videos=2, seconds=1.0, size=64, seed=5, workers=1,
                                   videos_per_identity=2, progress=False)
    assert summary["rendered"] == 2
    path = tmp_path / corpus.video_name(1)
    info = media.probe(path)
    assert (info.num_frames, info.width, info.height, info.has_audio) == (25, 64, 64, True)
    audio, _ = media.read_audio(path)
    sample = corpus.synth_sample(5, 1, 1.0, 64, videos_per_identity=2)
    assert abs(len(audio) - 16_000) < 1100  # AAC pads the last frame
    assert speech.mouth_opening_from_audio(audio, 25) == pytest.approx(sample.video.opening, abs=0.05)

    # The data helper's landmarks-file backend reads it as an iBUG-68 track.
    track = LandmarksFileFaces().track(path, enumerate(media.iter_frames(path)))
    assert track.layout.kind == IBUG_68.kind and track.landmarks.shape == (25, 70, 2) and track.found.all()
    np.testing.assert_allclose(track.boxes, sample.video.boxes)
    assert FaceTrack.load(f"{path}.landmarks.npz").landmarks.shape == (25, 70, 2)
    truth = corpus.load_truth(path)
    np.testing.assert_allclose(truth.opening, sample.video.opening)

    meta = json.loads((tmp_path / f"{corpus.video_name(0)}.json").read_text())
    assert meta["identity_id"] == 0  # two videos, one person
    assert render.Identity.from_dict(meta["identity"]) == sample.identity
    again = corpus.render_corpus(tmp_path, num_videos=2, seconds=1.0, size=64, seed=5, workers=1,
                                 progress=False)
    assert again == {**summary, "rendered": 0, "skipped": 2}
    assert not list(tmp_path.glob(".*partial*"))


def test_shipped_config_runs_the_command(tmp_path, capsys) -> None:
    from hydra import compose, initialize_config_dir

    from lipsync.synth.__main__ import main

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("synth", overrides=[f"output={tmp_path}", "num_videos=1", "seconds=0.4", "size=32",
                                          "workers=1", "progress=false"])
    main(cfg)
    assert json.loads(capsys.readouterr().out)["rendered"] == 1
    assert media.probe(tmp_path / corpus.video_name(0)).num_frames == 10
    assert json.loads((tmp_path / "index.json").read_text())["videos"][0]["video"] == corpus.video_name(0)


def test_redubbed_truth_is_the_same_person_and_motion_with_the_driving_mouth(tmp_path) -> None:
    """Driven by its own speech the redub redraws the corpus video exactly; driven by another clip's speech
    it keeps head motion and blinks (eyes and box top unchanged) and opens the mouth as that speech asks."""
    corpus.render_corpus(tmp_path, num_videos=2, seconds=1.0, size=64, seed=5, workers=1, progress=False)
    a = tmp_path / corpus.video_name(0)
    own, other = corpus.synth_sample(5, 0, 1.0, 64), corpus.synth_sample(5, 1, 1.0, 64)
    same = corpus.redubbed_truth(a, own.speech.wave)
    np.testing.assert_array_equal(same.frames, own.video.frames)
    redub = corpus.redubbed_truth(a, other.speech.wave)
    np.testing.assert_allclose(redub.opening, other.video.opening)
    np.testing.assert_allclose(redub.blink, own.video.blink)
    eyes = slice(36, 48)  # iBUG 68 eye points do not move with the mouth
    np.testing.assert_allclose(redub.landmarks[:, eyes], own.video.landmarks[:, eyes], atol=1e-4)
    assert np.abs(redub.opening - own.video.opening).max() > 0.1  # a different mouth

"""The adaptive mask (SPEC section 3): bounds, exact smoothing, gap filling, config variants."""

from __future__ import annotations

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from lipsync.cli import config_dir
from lipsync.data.faces import IBUG_68, MEDIAPIPE_478
from lipsync.data.masks import (AdaptiveMask, FixedMask, fill_gaps, landmark_boxes, pad_boxes, render_masks,
                                smooth_boxes)


def random_faces(n: int = 6, k: int = 478, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(40, 200, (n, k, 2)).astype(np.float32)


def test_smoothing_is_exact_on_a_step() -> None:
    # b~_t = alpha*b_t + (1-alpha)*b~_(t-1): after a unit step at t0, b~_t = 1 - (1-alpha)^(t-t0+1).
    alpha, t0 = 0.3, 4
    boxes = np.zeros((12, 4), np.float32)
    boxes[t0:] = 1.0
    out = smooth_boxes(boxes, alpha)
    expected = np.where(np.arange(12) >= t0, 1 - (1 - alpha) ** (np.arange(12) - t0 + 1), 0.0)
    np.testing.assert_allclose(out[:, 0], expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(smooth_boxes(boxes, 1.0), boxes)  # alpha = 1: unsmoothed
    with pytest.raises(ValueError, match="alpha"):
        smooth_boxes(boxes, 0.0)


def test_gaps_up_to_eight_frames_are_filled_linearly_longer_ones_reported() -> None:
    values = np.arange(30, dtype=np.float32)[:, None].repeat(4, axis=1)
    values[3:11] = np.nan    # 8 frames: filled
    values[15:24] = np.nan   # 9 frames: too long
    values[0] = np.nan       # leading frame: copied from its neighbour
    filled, unfilled = fill_gaps(values, max_gap=8)
    np.testing.assert_allclose(filled[3:11, 0], np.arange(3, 11), rtol=1e-6)  # linear between 2 and 11
    assert filled[0, 0] == 1.0
    assert unfilled == [(15, 24)]
    assert np.isnan(filled[15:24]).all() and not np.isnan(filled[24:]).any()


def test_adaptive_rectangle_contains_lips_and_lower_face_with_exact_padding() -> None:
    lm = random_faces()
    mask = AdaptiveMask(alpha=1.0, pad_x=0.1, pad_top=0.05, pad_bottom=0.2)
    boxes = mask.boxes(lm, MEDIAPIPE_478, 256, 256)
    idx = np.union1d(MEDIAPIPE_478.mouth_idx, MEDIAPIPE_478.lower_face_idx)
    raw = landmark_boxes(lm, idx)
    for b, pts in zip(boxes, lm[:, idx]):
        assert (pts[:, 0] >= b[0]).all() and (pts[:, 0] <= b[2]).all()
        assert (pts[:, 1] >= b[1]).all() and (pts[:, 1] <= b[3]).all()
    w, h = raw[:, 2] - raw[:, 0], raw[:, 3] - raw[:, 1]
    np.testing.assert_allclose(boxes[:, 0], raw[:, 0] - 0.1 * w, rtol=1e-5)
    np.testing.assert_allclose(boxes[:, 3], raw[:, 3] + 0.2 * h, rtol=1e-5)
    np.testing.assert_allclose(boxes[:, 1], raw[:, 1] - 0.05 * h, rtol=1e-5)


def test_padding_then_smoothing_equals_smoothing_then_padding() -> None:
    # Both are linear in the coordinates, so the order is immaterial (the mask smooths padded boxes).
    boxes = landmark_boxes(random_faces(10), MEDIAPIPE_478.mouth_idx)
    a = smooth_boxes(pad_boxes(boxes, 0.1, 0.2, 0.3), 0.4)
    b = pad_boxes(smooth_boxes(boxes, 0.4), 0.1, 0.2, 0.3)
    np.testing.assert_allclose(a, b, rtol=1e-5)


def test_render_is_the_filled_rectangle() -> None:
    masks = render_masks(np.array([[2, 3, 7, 9], [0, 0, 4, 4]], np.float32), 12, 10)
    assert masks.shape == (2, 1, 12, 10) and set(np.unique(masks)) == {0.0, 1.0}
    assert masks[0, 0].sum() == 5 * 6 and masks[0, 0, 3:9, 2:7].all()
    assert masks[1, 0, :4, :4].all() and masks[1, 0].sum() == 16
    with pytest.raises(ValueError, match="frames \\[1\\]"):
        render_masks(np.array([[0, 0, 1, 1], [np.nan] * 4]), 4, 4)


def test_a_gap_inside_the_mask_track_is_bridged() -> None:
    lm = random_faces(12)
    lm[4:7] = np.nan
    masks = AdaptiveMask(max_gap=8)(lm, MEDIAPIPE_478, 64, 64)
    assert masks.shape == (12, 1, 64, 64) and (masks.reshape(12, -1).sum(1) > 0).all()
    lm[2:12] = np.nan
    with pytest.raises(ValueError, match="gap limit"):
        AdaptiveMask(max_gap=8)(lm, MEDIAPIPE_478, 64, 64)


def test_lips_mask_is_inside_the_adaptive_mask_and_fixed_ignores_landmarks() -> None:
    lm = random_faces(4, k=68)
    lips = AdaptiveMask(points="mouth", pad_x=0, pad_top=0, pad_bottom=0).boxes(lm, IBUG_68, 256, 256)
    lower = AdaptiveMask().boxes(lm, IBUG_68, 256, 256)
    assert (lips[:, :2] >= lower[:, :2]).all() and (lips[:, 2:] <= lower[:, 2:]).all()
    fixed = FixedMask((0.25, 0.5, 0.75, 1.0))
    np.testing.assert_array_equal(fixed.boxes(lm, IBUG_68, 200, 100), [[25, 100, 75, 200]] * 4)
    np.testing.assert_array_equal(fixed.boxes(lm, IBUG_68, 200, 100), fixed.boxes(lm * 0, IBUG_68, 200, 100))
    with pytest.raises(ValueError, match="fixed mask box"):
        FixedMask((0.5, 0.5, 0.4, 1.0))


def talking_face_landmarks(openings: np.ndarray, seed: int = 0) -> np.ndarray:
    """iBUG-68 landmarks (in pixels of a 32 px crop) of one synthetic identity at the given mouth openings."""
    from lipsync.synth.render import face_landmarks, sample_identity

    ident = sample_identity(np.random.default_rng(seed))
    return np.stack([face_landmarks(ident, float(o)) for o in openings]) * 12.0 + 16.0


def test_a_per_frame_box_tells_the_opening_and_a_steady_box_does_not() -> None:
    # The synthetic jaw drops with the mouth (as a real one does): the per-frame box's bottom edge follows
    # the opening, so the mask alone hands the network the source mouth. The steady box keeps each frame's
    # top edge and centre but one size, the sequence's largest, so it still covers every lower-face point.
    openings = np.abs(np.sin(np.linspace(0, 6, 40)))
    lm = talking_face_landmarks(openings)
    per_frame = AdaptiveMask(alpha=1.0).boxes(lm, IBUG_68, 32, 32)
    steady = AdaptiveMask(alpha=1.0, size="steady").boxes(lm, IBUG_68, 32, 32)
    assert np.corrcoef(per_frame[:, 3], openings)[0, 1] > 0.99
    assert np.ptp(per_frame[:, 3]) > 2.0  # pixels of a 32 px crop: a cue a network reads easily
    heights, widths = steady[:, 3] - steady[:, 1], steady[:, 2] - steady[:, 0]
    assert np.ptp(heights) < 1e-4 and np.ptp(widths) < 1e-4
    np.testing.assert_allclose(heights[0], (per_frame[:, 3] - per_frame[:, 1]).max(), rtol=1e-5)
    np.testing.assert_allclose(steady[:, 0] + steady[:, 2], per_frame[:, 0] + per_frame[:, 2], atol=1e-4)
    # The head is still, and the top edge is the nose base's less a padding of the steady height: no edge
    # moves with the mouth, not even by the fraction of a pixel that flips a row of the rendered mask.
    assert np.ptp(steady[:, 1]) < 1e-4 and np.ptp(steady[:, 3]) < 1e-4
    assert np.ptp(per_frame[:, 1]) > 0.1  # a per-frame box's top edge moves too (padding grows with it)
    idx = np.union1d(IBUG_68.mouth_idx, IBUG_68.lower_face_idx)
    assert (lm[:, idx, 1] <= steady[:, 3:4]).all() and (lm[:, idx, 0] >= steady[:, 0:1]).all()


def test_a_steady_box_is_sized_by_its_sequence() -> None:
    # The reference frame of a training sample is masked with its video's box size, as at inference.
    lm = talking_face_landmarks(np.linspace(0, 1, 9))
    mask = AdaptiveMask(alpha=1.0, size="steady")
    whole = mask.boxes(lm, IBUG_68, 32, 32)
    np.testing.assert_allclose(mask.boxes(lm[2:3], IBUG_68, 32, 32, size_from=lm)[0], whole[2], rtol=1e-6)
    alone = mask.boxes(lm[2:3], IBUG_68, 32, 32)[0]
    assert alone[3] < whole[2, 3] - 1.0  # sized by a nearly closed mouth alone, it would be too short
    median = AdaptiveMask(alpha=1.0, size="steady", size_quantile=0.5).boxes(lm, IBUG_68, 32, 32)
    assert median[0, 3] - median[0, 1] < whole[0, 3] - whole[0, 1]
    assert "steady" in repr(mask) and "steady" not in repr(AdaptiveMask())  # shards' cached-latent check
    with pytest.raises(ValueError, match="size"):
        AdaptiveMask(size="clip")
    with pytest.raises(ValueError, match="size_quantile"):
        AdaptiveMask(size="steady", size_quantile=1.5)


@pytest.mark.parametrize("name", ["adaptive", "unsmoothed", "lips", "fixed", "steady"])
def test_every_mask_config_instantiates_and_renders(name: str) -> None:
    with initialize_config_dir(config_dir=str(config_dir() / "mask"), version_base="1.3"):
        mask = instantiate(compose(config_name=name))
    lm = random_faces(5)
    lm[:, :, :] = np.linspace(60, 180, 5)[:, None, None] + lm * 0.2  # a face drifting right/down
    masks = mask(lm, MEDIAPIPE_478, 256, 256)
    assert masks.shape == (5, 1, 256, 256) and (masks.reshape(5, -1).sum(1) > 0).all()
    expected = {"adaptive": (AdaptiveMask, 0.5), "unsmoothed": (AdaptiveMask, 1.0), "lips": (AdaptiveMask, 0.5),
                "fixed": (FixedMask, None), "steady": (AdaptiveMask, 0.5)}[name]
    assert isinstance(mask, expected[0]) and getattr(mask, "alpha", None) == expected[1]
    if name == "lips":
        assert mask.points == "mouth"
    if name == "steady":
        assert mask.size == "steady" and mask.size_quantile == 1.0

"""SyncNet v2 scoring: the real checkpoint format, MFCC framing, the crop, and the offset search.

The offset search is proven with a tiny SyncNet trained here on a synthetic audio-visual world where the
mouth opening follows the audio loudness: it must find imposed audio shifts exactly and be more
confident about in-sync audio than about shifted or unrelated audio.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lipsync.models.syncnet import (
    SyncNetScorer,
    SyncNetV2,
    av_offset,
    load_syncnet,
    mfcc,
    resample_frames,
    sliding_windows,
    smooth_boxes,
    syncnet_crop,
)
from lipsync.models.weights import MissingWeights

RATE, FPS, HOP = 16_000, 25, 640  # 640 samples of audio per video frame
CROP = 32


# ---------------------------------------------------------------------------------------------------
# a tiny synthetic talking world: loudness envelope -> audio, and the same envelope -> mouth height


def envelope(rng: np.random.Generator, frames: int) -> np.ndarray:
    """Per-frame loudness in [0, 1]: random syllable-like bursts with pauses, changing every 1-3 frames."""
    values = []
    while len(values) < frames:
        values += [rng.uniform(0.0, 1.0) if rng.random() > 0.2 else 0.0] * int(rng.integers(1, 4))
    return np.asarray(values[:frames])


def render_audio(env: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A voiced buzz (120 Hz harmonics + noise) whose amplitude follows ``env`` per 40 ms frame."""
    t = np.arange(len(env) * HOP) / RATE
    carrier = sum(np.sin(2 * np.pi * 120 * h * t) / h for h in range(1, 8))
    carrier = carrier + 0.3 * rng.standard_normal(len(t))
    amp = np.interp(np.arange(len(t)), np.arange(len(env)) * HOP + HOP / 2, env)
    return (0.3 * (amp + 0.01) * carrier).astype(np.float32)


def render_frames(env: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(T, CROP, CROP, 3) uint8 faces: skin square, a dark mouth whose height follows ``env``."""
    frames = np.full((len(env), CROP, CROP, 3), (90, 140, 200), np.uint8)
    frames[:, 4:28, 6:26] = (170, 190, 230)
    for t, e in enumerate(env):
        h = 1 + int(round(e * 8))
        frames[t, 20 - h // 2:20 + (h + 1) // 2, 11:21] = (40, 20, 60)
    noise = rng.integers(-8, 9, frames.shape)
    return np.clip(frames.astype(int) + noise, 0, 255).astype(np.uint8)


class TinySyncNet(nn.Module):
    """SyncNet's interface at toy size: 5 frames of 32x32 / 20 MFCC steps -> unit 16-d embeddings."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        # per-frame 2D convs (CPU Conv3d backward is slow), pooled to one 8-d vector per frame
        self.frame = nn.Sequential(nn.Conv2d(3, 8, 5, stride=2, padding=2), nn.ReLU(),
                                   nn.AdaptiveAvgPool2d(1))
        self.lip = nn.Sequential(nn.Flatten(), nn.Linear(40, 64), nn.ReLU(), nn.Linear(64, dim))
        self.aud = nn.Sequential(nn.Conv2d(1, 8, (13, 4), stride=(1, 4)), nn.ReLU(), nn.Flatten(),
                                 nn.Linear(40, 64), nn.ReLU(), nn.Linear(64, dim))

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        per_frame = self.frame(x.transpose(1, 2).reshape(b * t, c, h, w) / 255.0 - 0.5).reshape(b, t * 8)
        return nn.functional.normalize(self.lip(per_frame), dim=1)

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.aud(x / 20.0), dim=1)


def training_clip(rng: np.random.Generator, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Aligned windows of one synthetic clip: lips (N, 3, 5, H, W) BGR and MFCC (N, 1, 13, 20)."""
    env = envelope(rng, frames)
    video = np.stack(list(sliding_windows(render_frames(env, rng)[..., ::-1], 5)))
    cc = torch.from_numpy(mfcc(render_audio(env, rng)))
    aud = cc.unfold(1, 20, 4).permute(1, 0, 2)[:, None]
    n = min(len(video), len(aud))
    lips = torch.from_numpy(video[:n].astype(np.float32)).permute(0, 4, 1, 2, 3)
    aud = aud[:n]
    return lips, aud


@pytest.fixture(scope="module")
def trained_tiny_syncnet() -> TinySyncNet:
    """Train the tiny net for 300 steps: InfoNCE where the other windows of the same clip (other offsets)
    are the negatives, so it learns *timing*, not just identity."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    net = TinySyncNet()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    clips = [training_clip(rng, 64) for _ in range(24)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # ops this small lose more to thread hand-offs than they gain (10x when busy)
    try:
        for step in range(300):
            lips, aud = clips[step % len(clips)]
            v, a = net.forward_lip(lips), net.forward_aud(aud)
            logits = -torch.cdist(v, a) / 0.1
            target = torch.arange(len(v))
            loss = nn.functional.cross_entropy(logits, target) + nn.functional.cross_entropy(logits.T, target)
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return net.eval()


def shifted_pair(seed: int, shift: int, frames: int = 100, margin: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Video frames ``[margin, margin + frames)`` and audio leading them by ``shift`` frames."""
    rng = np.random.default_rng(seed)
    env = envelope(rng, frames + 2 * margin)
    audio = render_audio(env, rng)
    video = render_frames(env, rng)[margin:margin + frames]
    start = (margin + shift) * HOP
    return video, audio[start:start + frames * HOP]


# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shift", [-4, 0, 3])
def test_offset_search_finds_the_imposed_shift(trained_tiny_syncnet: TinySyncNet, shift: int) -> None:
    video, audio = shifted_pair(seed=100 + shift, shift=shift)
    result = SyncNetScorer(trained_tiny_syncnet, vshift=15).score(video, audio)
    assert result.offset == shift
    assert result.sync_c > 0.2  # a clear minimum in the distance curve


def test_in_sync_audio_is_more_confident_than_shifted_or_unrelated(trained_tiny_syncnet: TinySyncNet) -> None:
    scorer = SyncNetScorer(trained_tiny_syncnet, vshift=15)
    at_zero = {s: scorer.score(*shifted_pair(7, s)).confidence_at(0) for s in (0, 2, 6)}
    assert at_zero[0] > at_zero[2] > at_zero[6] - 0.05  # confidence as if in sync falls with the shift
    assert at_zero[0] > 3 * max(at_zero[2], 0.05)
    video, audio = shifted_pair(7, 0)
    _, unrelated = shifted_pair(8, 0)
    assert scorer.score(video, audio).sync_c > 2 * scorer.score(video, unrelated).sync_c


def test_real_checkpoint_format_loads_strictly_and_scores(tmp_path) -> None:
    torch.manual_seed(0)
    reference = SyncNetV2()
    for m in reference.modules():  # non-trivial running stats so a wrong key mapping would show
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "syncnet_v2.model"
    torch.save(reference.state_dict(), path)  # syncnet_python's keys: netcnnaud.0.weight ... netfclip.3.bias
    net = load_syncnet(path)
    assert not net.training
    for key, value in reference.state_dict().items():
        assert torch.equal(net.state_dict()[key], value), key
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (11, 224, 224, 3), dtype=np.uint8)
    audio = (0.1 * rng.standard_normal(11 * HOP)).astype(np.float32)
    result = SyncNetScorer(net, vshift=3, batch_size=4).score(frames, audio)
    assert result.dists.shape == (7,) and np.isfinite(result.sync_c) and result.sync_d > 0
    assert -3 <= result.offset <= 3


def test_missing_or_wrong_checkpoint_is_one_clear_line(tmp_path) -> None:
    with pytest.raises(MissingWeights, match=r"syncnet\.weights"):
        load_syncnet(tmp_path / "nope.model")
    bad = tmp_path / "bad.model"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="not a SyncNet v2 state dict"):
        load_syncnet(bad)


def test_embedding_shapes_match_syncnet_geometry() -> None:
    net = SyncNetV2().eval()
    with torch.no_grad():
        assert net.forward_lip(torch.zeros(1, 3, 5, 224, 224)).shape == (1, 1024)
        assert net.forward_aud(torch.zeros(1, 1, 13, 20)).shape == (1, 1024)


def test_mfcc_rate_and_framing() -> None:
    audio = np.zeros(RATE, np.float32)
    cc = mfcc(audio)
    assert cc.shape == (13, 99)  # 25 ms windows every 10 ms over 1 s: 1 + ceil((16000 - 400) / 160)
    loud = mfcc(0.5 * np.sin(np.arange(RATE) * 0.3).astype(np.float32))
    assert loud[0].mean() > cc[0].mean() + 5  # coefficient 0 is the log energy
    with pytest.raises(ValueError, match="16000 Hz"):
        mfcc(audio, 8000)


def test_av_offset_is_calc_pdist() -> None:
    """Same numbers as syncnet_python's loop over frames with torch's pairwise_distance."""
    torch.manual_seed(0)
    v, a, vshift = torch.randn(9, 6), torch.randn(9, 6), 4
    padded = nn.functional.pad(a, (0, 0, vshift, vshift))
    window = 2 * vshift + 1
    loop = torch.stack([nn.functional.pairwise_distance(v[[i]].repeat(window, 1), padded[i:i + window])
                        for i in range(9)], 1).mean(1)
    result = av_offset(v, a, vshift)
    np.testing.assert_allclose(result.dists, loop.numpy(), rtol=1e-5)
    assert result.offset == vshift - int(loop.argmin())
    assert result.sync_c == pytest.approx(float(loop.median() - loop.min()), rel=1e-5)


def test_syncnet_crop_geometry() -> None:
    frame = np.zeros((100, 100, 3), np.uint8)
    frame[60:70, 40:60] = 255  # a "mouth" below the box centre
    crop = syncnet_crop(frame, np.array([30.0, 20.0, 70.0, 60.0]), crop_scale=0.4, size=56)
    # s = 20, centre (50, 40): the crop spans x 22..78 and y 20..76 (56 x 56), so the mouth's rows 60..70
    # land on crop rows 40..50, in the lower half, and the box's top edge is the crop's top edge
    assert crop.shape == (56, 56, 3)
    assert crop[45, 28].max() == 255 and crop[39, 28].max() == 0 and crop[51, 28].max() == 0
    edge = syncnet_crop(frame, np.array([0.0, 0.0, 40.0, 40.0]), size=56)
    assert (edge[0, 0] == 110).all()  # outside the frame is syncnet_python's grey


def test_resample_and_windows_stream() -> None:
    frames = [np.full((2, 2, 3), i, np.uint8) for i in range(30)]
    out = list(resample_frames(frames, fps=30.0, target_fps=25.0))
    assert len(out) == 25 and out[-1][0, 0, 0] == 29
    wins = list(sliding_windows(range(10), 4, stride=3))
    assert [list(w) for w in wins] == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    boxes = np.tile([10.0, 10.0, 30.0, 30.0], (15, 1))
    boxes[7] = [50, 50, 90, 90]  # one jumpy detection is removed by the median filter
    np.testing.assert_allclose(smooth_boxes(boxes)[7], [10, 10, 30, 30])


@pytest.mark.weights
def test_real_syncnet_confidence_drops_as_the_audio_shift_grows() -> None:
    """With the real syncnet_v2.model (LIPSYNC_WEIGHTS=dir): the synthetic world's own ground truth
    is most confident in sync, and the as-if-in-sync confidence falls as the audio is shifted."""
    weights = Path(os.environ.get("LIPSYNC_WEIGHTS", "weights")) / "syncnet_v2.model"
    if not weights.exists():
        pytest.skip(f"needs the real SyncNet v2 at {weights} (set LIPSYNC_WEIGHTS=DIR)")
    from lipsync.synth import synth_sample

    sample = synth_sample(seed=0, index=0, seconds=8.0, size=256)
    boxes = smooth_boxes(sample.video.boxes.astype(np.float64))
    crops = [syncnet_crop(f, b) for f, b in zip(sample.video.frames, boxes)]
    scorer = SyncNetScorer(load_syncnet(weights))
    wave = sample.speech.wave.astype(np.float32)
    conf = {}
    for shift in (0, 3, 8):
        audio = np.concatenate([wave[shift * HOP:], np.zeros(shift * HOP, np.float32)])  # leads by `shift`
        result = scorer.score(crops, audio)
        conf[shift] = result.confidence_at(0)
        assert abs(result.offset - shift) <= 1, (shift, result.offset)
    assert conf[0] > conf[3] > conf[8]

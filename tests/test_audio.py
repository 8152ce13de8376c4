"""Audio guidance: per-frame windows in closed form, and the Whisper encoder wrapper at tiny dims."""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
import whisper
from whisper.model import ModelDimensions

from lipsync.media import write_wav
from lipsync.models.audio import (
    WHISPER_DIMS,
    WhisperAudioEncoder,
    cached_features,
    encode_file,
    frame_windows,
)

# Whisper's encoder needs n_audio_ctx = 1500 (30 s) and n_mels in {80, 128}; everything else is tiny.
TINY = ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=32, n_audio_head=2, n_audio_layer=2,
                       n_vocab=64, n_text_ctx=8, n_text_state=32, n_text_head=2, n_text_layer=1)


def ramp(num_steps: int, width: int = 3) -> torch.Tensor:
    """feats[s] = s + 1 in every channel, so a zero can only come from padding."""
    return (torch.arange(num_steps, dtype=torch.float32) + 1)[:, None].repeat(1, width)


def column(windows: torch.Tensor, t: int) -> list[float]:
    return windows[t, :, 0].tolist()


# --- frame_windows: closed form -------------------------------------------------------------------


def test_windows_first_and_last_frame_are_zero_padded() -> None:
    out = frame_windows(ramp(8), num_frames=4, m=2)  # 4 frames at 25 fps = 8 steps exactly
    assert out.shape == (4, 10, 3)
    assert column(out, 0) == [0, 0, 0, 0, 1, 2, 3, 4, 5, 6]  # frame 0 -> steps -4..5
    assert column(out, 1) == [0, 0, 1, 2, 3, 4, 5, 6, 7, 8]  # frame 1 -> steps -2..7
    assert column(out, 2) == [1, 2, 3, 4, 5, 6, 7, 8, 0, 0]  # frame 2 -> steps 0..9
    assert column(out, 3) == [3, 4, 5, 6, 7, 8, 0, 0, 0, 0]  # frame 3 -> steps 2..11
    assert torch.equal(out[..., 0], out[..., 2])  # every channel follows the same index map


def test_windows_start_frame_uses_real_neighbours_inside_the_video() -> None:
    out = frame_windows(ramp(40), num_frames=2, m=2, start_frame=5)
    assert column(out, 0) == list(range(7, 17))  # frame 5 -> steps 6..15
    assert column(out, 1) == list(range(9, 19))  # frame 6 -> steps 8..17


def test_windows_more_frames_than_audio() -> None:
    out = frame_windows(ramp(4), num_frames=6, m=2)  # the audio covers frames 0..1 only
    assert column(out, 3) == [3, 4] + [0] * 8  # frame 3 -> steps 2..11
    assert out[4:].abs().sum() == 0  # frames 4, 5 -> steps from 4 on: all past the audio


def test_windows_more_audio_than_frames_needs_no_end_padding() -> None:
    out = frame_windows(ramp(100), num_frames=3, m=1, start_frame=10)
    assert out.shape == (3, 6, 3)
    assert column(out, 2) == list(range(23, 29))  # frame 12 -> steps 22..27


def test_windows_m0_is_a_reshape_and_fps50_gives_one_step_per_frame() -> None:
    feats = torch.randn(10, 4)
    assert torch.equal(frame_windows(feats, num_frames=5, m=0), feats.reshape(5, 2, 4))
    out = frame_windows(ramp(6), num_frames=6, m=1, fps=50)
    assert out.shape == (6, 3, 3)
    assert column(out, 0) == [0, 1, 2] and column(out, 5) == [5, 6, 0]


def test_windows_batched_equals_per_item_and_matches_a_plain_loop() -> None:
    feats = torch.randn(2, 13, 5)
    out = frame_windows(feats, num_frames=9, m=2, start_frame=1)
    assert out.shape == (2, 9, 10, 5)
    for b in range(2):
        assert torch.equal(out[b], frame_windows(feats[b], num_frames=9, m=2, start_frame=1))
        for t in range(9):
            for a in range(10):
                s = 2 * (1 + t - 2) + a
                expected = feats[b, s] if 0 <= s < 13 else torch.zeros(5)
                assert torch.equal(out[b, t, a], expected)


def test_windows_reject_bad_arguments() -> None:
    with pytest.raises(ValueError, match="fps=30"):
        frame_windows(ramp(10), num_frames=2, fps=30)
    with pytest.raises(ValueError, match="m >= 0"):
        frame_windows(ramp(10), num_frames=2, m=-1)
    with pytest.raises(ValueError, match=r"\(S, D\)"):
        frame_windows(torch.zeros(10), num_frames=2)
    assert frame_windows(torch.zeros(0, 3), num_frames=2).shape == (2, 10, 3)


# --- WhisperAudioEncoder at tiny dims, through the real checkpoint format --------------------------


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, whisper.model.Whisper]:
    """A random tiny Whisper saved exactly as openai-whisper checkpoints are: {"dims", "model_state_dict"}."""
    torch.manual_seed(0)
    model = whisper.model.Whisper(TINY)
    path = tmp_path_factory.mktemp("whisper") / "tiny.pt"
    torch.save({"dims": asdict(TINY), "model_state_dict": model.state_dict()}, path)
    assert whisper.load_model(str(path), device="cpu").dims == TINY  # the format whisper itself reads
    return path, model


@pytest.fixture(scope="module")
def tiny_encoder(tiny_checkpoint: tuple[Path, whisper.model.Whisper]) -> WhisperAudioEncoder:
    return WhisperAudioEncoder.from_checkpoint(tiny_checkpoint[0])


def speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """A deterministic 16 kHz test signal: a gliding tone with noise bursts (not speech, just varied)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    tone = 0.3 * np.sin(2 * np.pi * (200 + 150 * np.sin(2 * np.pi * 0.7 * t)) * t)
    wave = tone * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.02 * rng.standard_normal(t.size)
    return wave.astype(np.float32)


def test_encoder_equals_whisper_on_one_chunk(tiny_checkpoint, tiny_encoder) -> None:
    _, model = tiny_checkpoint
    wave = speechlike(3.3)
    got = tiny_encoder(wave)
    assert got.shape == (1, math.ceil(wave.size / 320), 32) == (1, 165, 32)
    mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(wave)))
    with torch.no_grad():
        expected = model.encoder(mel[None])[:, :165]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_long_audio_is_encoded_in_independent_30s_chunks(tiny_encoder) -> None:
    wave = speechlike(31.0)  # 30 s chunk + 1 s chunk
    got = tiny_encoder(torch.from_numpy(wave))
    assert got.shape == (1, 1550, 32)
    torch.testing.assert_close(got[:, :1500], tiny_encoder(wave[:480000]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[:, 1500:], tiny_encoder(wave[480000:]), rtol=1e-5, atol=1e-5)


def test_batched_wave_equals_items(tiny_encoder) -> None:
    waves = np.stack([speechlike(1.0, seed=1), speechlike(1.0, seed=2)])
    got = tiny_encoder(waves)
    assert got.shape == (2, 50, 32)
    torch.testing.assert_close(got[1:], tiny_encoder(waves[1]), rtol=1e-5, atol=1e-5)


def test_intermediate_layers_are_block_outputs(tiny_checkpoint) -> None:
    path, model = tiny_checkpoint
    wave = speechlike(0.5)
    captured = {}
    model.encoder.blocks[0].register_forward_hook(lambda mod, inp, out: captured.setdefault("block0", out))
    mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(wave)))
    with torch.no_grad():
        final = model.encoder(mel[None])[:, :25]
    block0 = captured["block0"][:, :25]
    concat = WhisperAudioEncoder.from_checkpoint(path, layers=(0, -1), combine="concat")
    mean = WhisperAudioEncoder.from_checkpoint(path, layers=(0, -1), combine="mean")
    assert concat.dim == 64 and mean.dim == 32
    torch.testing.assert_close(concat(wave), torch.cat([block0, final], -1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mean(wave), (block0 + final) / 2, rtol=1e-5, atol=1e-5)


def test_encoder_is_frozen_and_stays_in_eval(tiny_encoder) -> None:
    torch.nn.Sequential(tiny_encoder).train()  # a LightningModule's .train() reaches its children
    assert not tiny_encoder.training and not tiny_encoder.encoder.training
    assert all(not p.requires_grad for p in tiny_encoder.parameters())
    wave = torch.from_numpy(speechlike(0.2)).requires_grad_(True)
    assert not tiny_encoder(wave).requires_grad


def test_missing_checkpoint_names_file_config_key_and_command(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError) as err:
        WhisperAudioEncoder.from_checkpoint(missing)
    message = str(err.value)
    assert str(missing) in message and "model.audio_encoder.checkpoint" in message
    assert "python -m lipsync.models.whisper_convert" in message and "\n" not in message


def test_bad_wave_and_layers_are_rejected(tiny_encoder) -> None:
    with pytest.raises(ValueError, match="wave must be"):
        tiny_encoder(torch.zeros(1, 2, 100))
    with pytest.raises(ValueError, match="wave must be"):
        tiny_encoder(torch.zeros(0))
    with pytest.raises(ValueError, match="layers="):
        WhisperAudioEncoder.from_dims(TINY, layers=(5,))


def test_tiny_en_encoder_parameter_count_on_meta_device() -> None:
    with torch.device("meta"):
        enc = WhisperAudioEncoder.from_dims(WHISPER_DIMS["tiny.en"])
    d, mlp = 384, 4 * 384
    conv = (80 * d * 3 + d) + (d * d * 3 + d)
    block = (4 * d * d + 3 * d) + (d * mlp + mlp + mlp * d + d) + 2 * (2 * d)  # attn, mlp, two LayerNorms
    assert sum(p.numel() for p in enc.parameters()) == conv + 4 * block + 2 * d == 7_632_384
    assert enc.dim == 384


# --- files and the feature cache -------------------------------------------------------------------


def test_encode_file_and_cache_reuse(tmp_path: Path, tiny_encoder, tiny_checkpoint) -> None:
    wave = speechlike(0.8)
    wav = write_wav(tmp_path / "a.wav", wave, 16000)
    plain = encode_file(wav, tiny_encoder)
    assert plain.shape == (40, 32)
    cache = tmp_path / "cache"
    first = encode_file(wav, tiny_encoder, cache_dir=cache)
    torch.testing.assert_close(first, plain)
    (entry,) = cache.glob("*.pt")
    torch.save(torch.full_like(first, 7.0), entry)  # a second call must read the cache, not recompute
    assert torch.equal(encode_file(wav, tiny_encoder, cache_dir=cache), torch.full_like(first, 7.0))
    other = WhisperAudioEncoder.from_checkpoint(tiny_checkpoint[0], layers=(0,))
    cached_features(wave, other, cache)  # another encoder -> another key
    assert len(list(cache.glob("*.pt"))) == 2

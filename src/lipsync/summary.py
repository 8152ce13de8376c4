"""Model summary without weights: ``python -m lipsync.summary [experiment=full] [--frames 16 --size 320]``.

Builds every component on the meta device (no memory, no weights) from the composed ``conf/train.yaml``
(:func:`lipsync.cli.compose`; the net from the node training builds it from), and prints:

1. parameters per component (SVD UNet 1,524,623,082 at full size; new audio attention; ID-Guider ~98 M;
   VAE; audio encoder);
2. FLOPs of one forward of each, counted by ``torch.utils.flop_counter`` on meta tensors;
3. training-memory *estimates* per sample: weights, gradients, AdamW state, and the activations autograd
   saves in one forward, with and without gradient checkpointing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from diffusers import AutoencoderKLTemporalDecoder
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig
from torch import Tensor, nn
from torch.autograd.graph import saved_tensors_hooks
from torch.utils.flop_counter import FlopCounterMode

from lipsync import cli
from lipsync.infer.presets import crop_defaults
from lipsync.media import MODEL_FPS
from lipsync.models.audio import STEPS_PER_SECOND, WHISPER_DIMS, WhisperAudioEncoder
from lipsync.models.net import LipSyncNet
from lipsync.models.svd_xt import SVD_XT_VAE
from lipsync.models.vae import SpaceToDepthVAE, SVDVAE

META = torch.device("meta")
NET_TARGETS = ("lipsync.models.net.build_net", "lipsync.models.net.LipSyncNet")


@dataclass
class Components:
    """The model's parts, on the meta device."""

    net: LipSyncNet
    vae: nn.Module
    audio_encoder: nn.Module
    source: str  # where the configuration came from
    frames: int = 16  # clip length and square pixel size the FLOPs/memory are reported for
    size: int = 320
    audio_tokens: int = 10  # Whisper steps per frame: 2 * (2m + 1) at m = 2 (the config's data decides)


# ------------------------------------------------------------------------------------------------
# 1. building on the meta device
def svd_vae_full() -> SVDVAE:
    """SVD's VAE architecture (stable-video-diffusion-img2vid-xt/vae/config.json), random init."""
    return SVDVAE(AutoencoderKLTemporalDecoder(**SVD_XT_VAE))


def whisper_tiny_encoder() -> nn.Module:
    """Whisper tiny.en's encoder (random init)."""
    return WhisperAudioEncoder.from_dims(WHISPER_DIMS["tiny.en"])


def _find_node(cfg: Any, targets: Sequence[str]) -> Any:
    """First config node (depth-first) whose ``_target_`` is one of ``targets``; leaves stay unresolved."""
    if isinstance(cfg, DictConfig):
        if cfg._get_node("_target_") is not None and cfg._get_node("_target_")._value() in targets:
            return cfg
        children = [cfg._get_node(k) for k in cfg.keys()]
    elif isinstance(cfg, ListConfig):
        children = [cfg._get_node(i) for i in range(len(cfg))]
    else:
        return None
    for child in children:
        found = _find_node(child, targets) if isinstance(child, (DictConfig, ListConfig)) else None
        if found is not None:
            return found
    return None


def _vae_from_config(cfg: Any) -> nn.Module:
    node = _find_node(cfg, ("lipsync.models.vae.SpaceToDepthVAE",))
    # SVD's VAE in the config loads weights from disk; its architecture is fixed, so build that instead.
    return instantiate(node) if node is not None else svd_vae_full()


def audio_tokens(data: Any) -> int:
    """Whisper steps per video frame the data gives the net: ``data.audio_tokens`` (random clips), else
    ``k (2m + 1)`` for ``m = data.audio_context`` (shards; ``k`` = 50 steps/s over the model's fps)."""
    if data.get("audio_tokens") is not None:
        return int(data.audio_tokens)
    return int(STEPS_PER_SECOND // MODEL_FPS) * (2 * int(data.audio_context) + 1)


def clip_size(data: Any) -> int:
    """The training clips' pixel size: ``data.size`` (random clips), else prepare's crop resolution (the
    shards hold prepare's crops)."""
    return int(data.size) if data.get("size") is not None else int(crop_defaults()["resolution"])


def meta_components(overrides: Sequence[str] = ()) -> Components:
    """Compose ``conf/train.yaml`` with ``overrides`` and build its parts on meta: the net from the node
    training builds it from (``model.net.net``), the same node a converted run gives inference."""
    cfg = cli.compose("train", overrides)
    node = _find_node(cfg.model, NET_TARGETS)
    if node is None:
        raise ValueError(f"no node with _target_ in {NET_TARGETS} under model in "
                         f"{cli.config_dir()}/train.yaml {list(overrides)}")
    with META:
        net, vae = instantiate(node), _vae_from_config(cfg.model)
        # some diffusers/whisper buffers use legacy constructors that ignore the device context
        return Components(net.to(META), vae.to(META), whisper_tiny_encoder().to(META),
                          f"{cli.config_dir()}/train.yaml {' '.join(overrides)}", int(cfg.data.num_frames),
                          clip_size(cfg.data), audio_tokens(cfg.data))


# ------------------------------------------------------------------------------------------------
# 2. parameters and FLOPs
def count(module: nn.Module) -> int:
    """Number of parameters (works on the meta device)."""
    return sum(p.numel() for p in module.parameters())


def parameter_rows(c: Components) -> list[tuple[str, int]]:
    net = c.net
    audio = count(net.audio_proj) + count(net.audio_down) + count(net.audio_up)
    return [
        ("UNet (SVD, from the checkpoint)", count(net.unet)),
        ("audio attention (new)", audio),
        ("ID-Guider (new)", count(net.id_guider) if net.id_guider is not None else 0),
        ("denoiser total", count(net)),
        ("VAE (frozen)", count(c.vae)),
        ("audio encoder (Whisper, frozen)", count(c.audio_encoder)),
    ]


def net_inputs(net: LipSyncNet, frames: int, latent: int, tokens: int, batch: int = 1,
               dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor, dict]:
    """Meta tensors for one forward: x_in, c_noise, cond (B, T, C, latent, latent; audio: B, T, tokens, D)."""
    shape = (batch, frames, net.latent_channels, latent, latent)
    with META:
        cond = {"concat": torch.empty(shape, dtype=dtype), "id": None,
                "audio": torch.empty(batch, frames, tokens, net.audio_proj.in_features, dtype=dtype)}
        return torch.empty(shape, dtype=dtype), torch.zeros(batch, dtype=dtype), cond


def flops(fn: Callable[[], Any]) -> int:
    """FLOPs of ``fn()`` (matmuls, convolutions, attention) counted on meta tensors."""
    counter = FlopCounterMode(display=False)
    with META, counter, torch.no_grad():
        fn()
    return counter.get_total_flops()


def flop_rows(c: Components, frames: int, size: int) -> list[tuple[str, int]]:
    net, vae, f = c.net, c.vae, c.vae.downsample_factor
    x, c_noise, cond = net_inputs(net, frames, size // f, c.audio_tokens)
    with META:
        video = torch.empty(1, frames, 3, size, size)
        ref, mask = torch.empty(1, 3, size, size), torch.empty(1, 1, size, size)
        mel = torch.empty(1, 80, 3000)
    encoder = getattr(c.audio_encoder, "encoder", c.audio_encoder)
    return [
        ("UNet alone (diffusers forward)", unet_flops(net, x, cond["concat"], c_noise)),
        ("denoiser net F (UNet + audio attention), per sampling step", flops(lambda: net(x, c_noise, cond))),
        ("ID-Guider, once per sample", flops(lambda: net.encode_reference(ref, mask))),
        ("VAE encode, video + masked video", 2 * flops(lambda: vae.encode(video))),
        ("VAE decode", flops(lambda: vae.decode(torch.empty_like(x)))),
        ("Whisper encoder, one 30 s window", flops(lambda: encoder(mel))),
    ]


def unet_flops(net: LipSyncNet, x: Tensor, z_m: Tensor, c_noise: Tensor) -> int:
    """FLOPs of diffusers' own SVD UNet forward on the same input (zero image embedding)."""
    clip = torch.zeros(x.shape[0], 1, net.unet.config.cross_attention_dim, device=META)
    ids = net.added_time_ids.expand(x.shape[0], -1)
    return flops(lambda: net.unet(torch.cat([x, z_m], 2), c_noise, clip, ids))


# ------------------------------------------------------------------------------------------------
# 3. training-memory estimates
def saved_activation_bytes(net: LipSyncNet, frames: int, latent: int, tokens: int,
                           dtype: torch.dtype = torch.bfloat16) -> tuple[int, int]:
    """Bytes autograd saves in one training forward (batch 1): (without, with gradient checkpointing).

    Counted with saved-tensor hooks on meta tensors in ``dtype``. With checkpointing, what a block saves
    is dropped and the block's inputs are kept instead, plus one block's activations during recompute.
    An estimate: views of one storage count twice, and bf16-mixed keeps some tensors in fp32.
    """
    saved: dict[int, int] = {}
    blocks: list[tuple[int, int]] = []  # (bytes saved inside, bytes of its tensor inputs) per block call

    def pack(t: Tensor) -> Tensor:
        saved[id(t)] = t.numel() * t.element_size()
        return t

    plain_call = net._call

    def call(module: Any, *args: Any) -> Any:
        before = sum(saved.values())
        out = plain_call(module, *args)
        inputs = sum(a.numel() * a.element_size() for a in args if isinstance(a, Tensor))
        blocks.append((sum(saved.values()) - before, inputs))
        return out

    net_dtype = next(net.parameters()).dtype
    net.to(dtype)
    net._call = call  # type: ignore[method-assign]
    try:
        x, c_noise, cond = net_inputs(net, frames, latent, tokens, dtype=dtype)
        with META, saved_tensors_hooks(pack, lambda t: t), torch.enable_grad():
            net(x, c_noise, cond)
    finally:
        del net._call
        net.to(net_dtype)
    total = sum(saved.values())
    inside = sum(b for b, _ in blocks)
    return total, total - inside + sum(i for _, i in blocks) + max(b for b, _ in blocks)


def memory_rows(c: Components, frames: int, size: int) -> list[tuple[str, int]]:
    trainable = count(c.net)  # the paper fine-tunes the whole denoiser; VAE and Whisper are frozen
    frozen = count(c.vae) + count(c.audio_encoder)
    plain, ckpt = saved_activation_bytes(c.net, frames, size // c.vae.downsample_factor, c.audio_tokens)
    return [
        ("weights fp32 (denoiser + frozen encoders)", 4 * (trainable + frozen)),
        ("gradients fp32", 4 * trainable),
        ("AdamW state fp32 (exp_avg, exp_avg_sq)", 8 * trainable),
        ("activations bf16, no checkpointing, per sample", plain),
        ("activations bf16, gradient checkpointing, per sample", ckpt),
    ]


# ------------------------------------------------------------------------------------------------
def _table(title: str, rows: list[tuple[str, int]], fmt: Callable[[int], str]) -> str:
    width = max(len(name) for name, _ in rows)
    lines = [title, "-" * len(title)] + [f"  {name:<{width}}  {fmt(v):>18}" for name, v in rows]
    return "\n".join(lines)


def summary(overrides: Sequence[str] = (), frames: int | None = None, size: int | None = None,
            memory: bool = True, components: Components | None = None) -> str:
    """The printed report (see the module docstring); ``components`` skips building them from config.

    ``frames``/``size`` default to the config's ``data.num_frames``/``data.size`` (16 frames at 320 px).
    """
    c = components or meta_components(overrides)
    frames, size = frames or c.frames, size or c.size
    parts = [f"lipsync model summary ({c.source}; meta device, no weights)",
             _table("parameters", parameter_rows(c), lambda v: f"{v:,}"),
             _table(f"FLOPs per forward ({frames} frames, {size}x{size} px, batch 1)",
                    flop_rows(c, frames, size), lambda v: f"{v / 1e12:.3f} TFLOP")]
    if memory:
        parts.append(_table(f"training memory, ESTIMATES ({frames} frames, {size}px, per sample)",
                            memory_rows(c, frames, size), lambda v: f"{v / 2**30:.2f} GiB"))
    return "\n\n".join(parts)


def main(argv: Sequence[str] | None = None) -> None:
    parser = cli.ArgumentParser(prog="lipsync-summary", description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. experiment=full")
    parser.add_argument("--frames", type=int, default=None, help="clip length (default: the config's)")
    parser.add_argument("--size", type=int, default=None, help="square pixel size (default: the config's)")
    parser.add_argument("--no-memory", action="store_true", help="skip the activation-memory estimate")
    args = parser.parse_args(argv)
    with cli.user_errors("lipsync-summary"):
        print(summary(args.overrides, args.frames, args.size, memory=not args.no_memory))


if __name__ == "__main__":
    main()

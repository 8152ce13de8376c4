"""The raw SayAnything network F: SVD's spatio-temporal UNet plus audio and identity pathways (SPEC 2).

``F(c_in * x, c_noise, cond)`` where ``cond`` is role-keyed:

- ``"concat"``: z_m, the VAE-encoded masked video (B, T, C, h, w), concatenated on channels with the
  noisy latent (SVD's 8-channel input; it replaces SVD's first-frame concat);
- ``"audio"``: (B, T, A, D) per-frame windows of audio-encoder steps; the net projects D -> audio width
  and attends to them from new per-frame cross-attention layers in the down and up blocks;
- ``"id"``: the ID-Guider's per-level features (:meth:`LipSyncNet.encode_reference`) or None; added as
  residuals on the down path: a (B, C_l, h_l, w_l) feature is shared by all frames, a (B, T, C_l, h_l, w_l)
  one (video fusion) is added frame by frame.

:meth:`LipSyncNet.conditions` assembles that dict from pixels for training and inference alike, so the
three identity ablations of the paper's Table 3 (SPEC section 7) live in one place, each chosen by config:

- no ID-Guider (``build_net(id_guider=False)``): ``"id"`` is None;
- "VAE Feature" (``id_guider=latent_id_guider_for``): a :class:`LatentIDGuider` reads ``E(I_ref)``;
- "Video Fusion" (``video_fusion=True``): the ID-Guider reads each masked frame ``V_t * (1 - M_t)`` and
  ``"concat"`` is ``E(I_ref)`` repeated over frames, as SVD's first-frame concat, instead of z_m.

The forward pass is an explicit loop over diffusers' own submodules, because diffusers' UNet forward
repeats one ``encoder_hidden_states`` over frames and its temporal transformers read frame 0's tokens, so
per-frame audio needs its own path. SVD's CLIP cross-attention layers stay and receive zeros (SVD's null
image embedding). Every new layer ends in a zero-initialised projection, so at init the net computes
exactly what diffusers' ``UNetSpatioTemporalConditionModel.forward`` computes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Literal, Mapping, Sequence

import torch
from diffusers import UNetSpatioTemporalConditionModel
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.checkpoint import checkpoint

from lipsync.media import MODEL_FPS
from lipsync.models.audio_attention import AudioCrossAttention
from lipsync.models.id_guider import IDGuider, IDGuiderBase, LatentIDGuider
from lipsync.models.svd_xt import SVD_XT_HEADS, SVD_XT_WIDTHS  # the defaults of build_unet and build_net

AudioMode = Literal["separate", "svd_crossattn"]
#: the frozen VAE's encoder: video (B, T, 3, H, W) in [-1, 1] -> scaled latents (B, T, C, h, w)
Encoder = Callable[[Tensor], Tensor]
IDGuiderFactory = Callable[[UNetSpatioTemporalConditionModel], IDGuiderBase]
#: ``attention_backend`` names: the PyTorch SDPA kernels every attention layer of the net may use.
SDPA_BACKENDS = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
                 "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}


def sdpa_backends(choice: str | Sequence[str]) -> list[SDPBackend] | None:
    """The kernels ``attention_backend`` allows, or None for "auto" (PyTorch picks per call).

    A name or a list of names of :data:`SDPA_BACKENDS`: ``[flash, efficient]`` runs flash attention where
    it applies (bf16/fp16 on CUDA) and the memory-efficient kernel elsewhere, never the unfused math.
    """
    names = [choice] if isinstance(choice, str) else list(choice)
    if names == ["auto"]:
        return None
    unknown = [n for n in names if n not in SDPA_BACKENDS]
    if unknown or not names:
        raise ValueError(f"attention_backend must be 'auto' or names of {sorted(SDPA_BACKENDS)}, "
                         f"got {choice!r}")
    return [SDPA_BACKENDS[n] for n in names]


@dataclass
class _FrameContext:
    """What every block call needs, already laid out per frame (B*T leading)."""

    emb: Tensor  # (B*T, 4*C0) timestep + added-time-id embedding
    clip: Tensor  # (B*T, S, cross_attention_dim) SVD's cross-attention context: zeros (audio in the variant)
    indicator: Tensor  # (B, T) SVD's image_only_indicator: zeros = video mode
    audio: Tensor | None  # (B*T, A, W) projected audio tokens for the new layers
    frames: int


@dataclass
class ReferenceCondition:
    """What a sample's clips take from its reference frame (:meth:`LipSyncNet.reference_condition`)."""

    features: list[Tensor] | None = None  # ID-Guider features per level (B, C_l, h_l, w_l), shared by frames
    latent: Tensor | None = None  # (B, C, h, w) E(I_ref): video fusion's concat


class LipSyncNet(nn.Module):
    """SVD UNet + per-frame audio cross-attention + ID-Guider residuals.

    Args:
        unet: a diffusers ``UNetSpatioTemporalConditionModel`` with ``in_channels = 2 * out_channels``.
        id_guider: the identity encoder (its ``block_out_channels`` must be the UNet's leading widths):
            :class:`IDGuider` on pixels (the paper), :class:`LatentIDGuider` on the reference's VAE latent
            ("VAE Feature" ablation), or None (no identity pathway: ablation).
        audio_dim: width D of the raw audio-encoder features (384 for Whisper tiny).
        audio_width: width W the audio tokens are projected to.
        fps: clip frame rate; SVD was conditioned on ``fps - 1`` (its pipeline subtracts one).
        motion_bucket_id: SVD's motion conditioning constant.
        noise_aug_strength: SVD's conditioning-noise constant.
        gradient_checkpointing: recompute each resnet/attention in backward to save activation memory.
        audio_mode: ``"separate"`` (the paper: new per-frame layers in down and up blocks) or
            ``"svd_crossattn"`` (ablation: audio fed to SVD's own cross-attention instead of zeros; its
            temporal transformers then see frame 0's tokens, which is diffusers' behaviour, and step 0 is
            no longer SVD).
        video_fusion: Table 3's "Video Fusion" ablation: the ID-Guider encodes every masked frame and
            the reference's latent takes z_m's place in the 8-channel concat (see :meth:`conditions`).
        keep_unmasked: known-region blending (not in the paper; for small nets trained from scratch):
            the conditions carry ``"keep"`` = 1 - the lip mask at latent resolution, and the
            :class:`~lipsync.models.denoiser.Denoiser` returns z_m there instead of the net's estimate,
            so neither the loss nor the sampler spends anything on the region the output never
            changes (Blended Latent Diffusion's blend, applied in training too).
        attention_backend: the SDPA kernels of every attention layer (:func:`sdpa_backends`): "auto"
            (PyTorch's choice per call), or a name or list of "flash", "efficient", "cudnn", "math".
            Held in forward and in gradient checkpointing's recompute alike.
        channels_last: convolution weights in NHWC (``torch.channels_last``), so cuDNN runs the convs
            without layout transposes; the numbers are the same up to summation order.
    """

    def __init__(
        self,
        unet: UNetSpatioTemporalConditionModel,
        id_guider: IDGuiderBase | None,
        audio_dim: int = 384,
        audio_width: int = 1024,
        fps: int = MODEL_FPS,
        motion_bucket_id: int = 127,
        noise_aug_strength: float = 0.02,
        gradient_checkpointing: bool = False,
        audio_mode: AudioMode = "separate",
        video_fusion: bool = False,
        keep_unmasked: bool = False,
        attention_backend: str | Sequence[str] = "auto",
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        if keep_unmasked and video_fusion:
            raise ValueError("keep_unmasked blends z_m back in; video fusion has no z_m in its concat")
        cfg = unet.config
        if cfg.in_channels != 2 * cfg.out_channels:
            raise ValueError(f"UNet in_channels={cfg.in_channels} must be 2 * out_channels="
                             f"{cfg.out_channels} (noisy latent concatenated with the masked-video latent)")
        widths = tuple(cfg.block_out_channels)
        if id_guider is not None and (tuple(id_guider.block_out_channels)
                                      != widths[: len(id_guider.block_out_channels)]):
            raise ValueError(f"ID-Guider widths {id_guider.block_out_channels} must match the UNet's "
                             f"leading widths {widths}")
        if audio_mode not in ("separate", "svd_crossattn"):
            raise ValueError(f"audio_mode must be 'separate' or 'svd_crossattn', got {audio_mode!r}")
        self.unet = unet
        self.id_guider = id_guider
        self.audio_mode = audio_mode
        self.video_fusion = video_fusion
        self.keep_unmasked = keep_unmasked
        self.gradient_checkpointing = gradient_checkpointing
        self.latent_channels = int(cfg.out_channels)
        self.load_report: Any = None  # set by lipsync.models.pretrained when SVD weights are loaded
        clip_dim = _first(cfg.cross_attention_dim)
        self.audio_proj = nn.Linear(audio_dim, clip_dim if audio_mode == "svd_crossattn" else audio_width)
        new_layers = audio_mode == "separate"
        self.audio_down = nn.ModuleList(_audio_layers(b, audio_width, new_layers) for b in unet.down_blocks)
        self.audio_up = nn.ModuleList(_audio_layers(b, audio_width, new_layers) for b in unet.up_blocks)
        # SVD's micro-conditioning "added time ids": (fps - 1, motion bucket, noise augmentation).
        ids = torch.tensor([fps - 1, motion_bucket_id, noise_aug_strength], dtype=torch.float32)
        self.register_buffer("added_time_ids", ids, persistent=False)
        self._sdpa = sdpa_backends(attention_backend)
        self.attention_backend = (attention_backend if isinstance(attention_backend, str)
                                  else list(attention_backend))
        self.channels_last = channels_last
        if channels_last:
            _to_channels_last(self)

    # ----------------------------------------------------------------------------------------------
    def encode_reference(self, ref: Tensor, ref_mask: Tensor) -> list[Tensor] | None:
        """ID-Guider features, once per sample, or None when the net has no ID-Guider.

        Args:
            ref: what the ID-Guider reads: (B, 3, H, W) pixels in [-1, 1] (:class:`IDGuider`) or the
                (B, C, h, w) VAE latent (:class:`LatentIDGuider`).
            ref_mask: (B, 1, H, W) its lip mask in pixels.

        Returns:
            Per UNet down level l: (B, C_l, h / 2^l, w / 2^l), or None.
        """
        return None if self.id_guider is None else self.id_guider(ref, ref_mask)

    def conditions(self, encode: Encoder, masked_video: Tensor, mask: Tensor, ref: Tensor, ref_mask: Tensor,
                   audio: Tensor, z_m: Tensor | None = None) -> dict[str, Any]:
        """The role-keyed cond dict of a training clip: :meth:`reference_condition`, :meth:`clip_conditions`.

        Args:
            encode: the frozen VAE's encoder, (B, T, 3, H, W) -> (B, T, C, h, w).
            masked_video: (B, T, 3, H, W) V * (1 - M) in [-1, 1].
            mask: (B, T, 1, H, W) the lip masks M.
            ref: (B, 3, H, W) the reference frame I_ref in [-1, 1].
            ref_mask: (B, 1, H, W) its mask M_ref.
            audio: (B, T, A, D) per-frame audio windows, passed through.
            z_m: E(masked_video) when already cached (the data's ``masked_latents``).

        Returns:
            ``{"concat": (B, T, C, h, w), "audio": audio, "id": list per level or None}``.
        """
        reference = self.reference_condition(encode, ref, ref_mask)
        return self.clip_conditions(encode, reference, masked_video, mask, audio, z_m)

    def reference_condition(self, encode: Encoder, ref: Tensor, ref_mask: Tensor) -> ReferenceCondition:
        """What the clips of a sample (or a whole video at inference) take from its reference, computed once.

        Paper: the ID-Guider's features of (I_ref, M_ref) (of (E(I_ref), M_ref) for a
        :class:`LatentIDGuider`). Video fusion: E(I_ref), for the concat. No ID-Guider: nothing.

        Args:
            encode: the frozen VAE's encoder, (B, T, 3, H, W) -> (B, T, C, h, w).
            ref: (B, 3, H, W) the reference frame in [-1, 1].
            ref_mask: (B, 1, H, W) its mask.
        """
        if self.video_fusion:
            return ReferenceCondition(latent=encode(ref[:, None])[:, 0])
        feats = self._guide(ref[:, None], ref_mask[:, None], lambda: encode(ref[:, None]))
        return ReferenceCondition(features=None if feats is None else [f[:, 0] for f in feats])

    def clip_conditions(self, encode: Encoder, reference: ReferenceCondition, masked_video: Tensor,
                        mask: Tensor, audio: Tensor, z_m: Tensor | None = None) -> dict[str, Any]:
        """The role-keyed cond dict of one clip, for this net's identity pathway (training and inference).

        Paper: ``concat`` = z_m = E(V * (1 - M)), ``id`` = the reference's features, shared by all frames.
        Video fusion: ``concat`` = E(I_ref) repeated over T, ``id`` = ID-Guider(V_t * (1 - M_t), M_t) per
        frame, (B, T, C_l, h_l, w_l) (of their latents for a :class:`LatentIDGuider`).

        Args:
            encode: the frozen VAE's encoder, (B, T, 3, H, W) -> (B, T, C, h, w).
            reference: :meth:`reference_condition` of the clip's reference.
            masked_video: (B, T, 3, H, W) V * (1 - M) in [-1, 1].
            mask: (B, T, 1, H, W) the lip masks M.
            audio: (B, T, A, D) per-frame audio windows, passed through.
            z_m: E(masked_video) when already cached (the data's ``masked_latents``).
        """
        def masked_latents() -> Tensor:  # encoded only when needed (and not when cached)
            return z_m if z_m is not None else encode(masked_video)

        if self.video_fusion:
            if reference.latent is None:
                raise ValueError("a video-fusion net needs reference.latent (from reference_condition)")
            concat = reference.latent[:, None].expand(-1, masked_video.shape[1], -1, -1, -1)
            identity = self._guide(masked_video, mask, masked_latents)
        else:
            concat, identity = masked_latents(), reference.features
        cond = {"concat": concat, "audio": audio, "id": identity}
        if self.keep_unmasked:
            cond["keep"] = 1.0 - latent_mask(mask, concat.shape[-2:]).to(concat.dtype)
        return cond

    def _guide(self, frames: Tensor, masks: Tensor, latents: Callable[[], Tensor]) -> list[Tensor] | None:
        """ID-Guider on every frame: (B, T, 3, H, W) + (B, T, 1, H, W) -> per level (B, T, C_l, h_l, w_l).

        ``latents`` gives the frames' VAE latents (B, T, C, h, w); called only if the guider reads latents.
        """
        if self.id_guider is None:
            return None
        x = latents() if self.id_guider.takes_latents else frames
        feats = self.id_guider(x.flatten(0, 1), masks.flatten(0, 1))
        return [f.unflatten(0, frames.shape[:2]) for f in feats]

    def forward(self, x_in: Tensor, c_noise: Tensor, cond: Mapping[str, Any]) -> Tensor:
        """Raw network output F.

        Args:
            x_in: (B, T, C, h, w) preconditioned noisy latent c_in * x.
            c_noise: (B,) noise conditioning (0.25 ln sigma for SVD), SVD's "timestep".
            cond: {"concat": (B, T, C, h, w), "audio": (B, T, A, D),
                "id": list of (B, C_l, h_l, w_l) per down level, or None (= zeros)}.

        Returns:
            (B, T, C, h, w) network output F (v-prediction for SVD's preconditioning).
        """
        z_m, audio, id_feats = self._check(x_in, c_noise, cond)
        b, t = x_in.shape[:2]
        # 1. per-frame context: time embedding, SVD's cross-attention context, audio tokens
        ctx = self._context(x_in, c_noise, audio)
        # 2. SVD's 8-channel input: noisy latent and masked-video latent on channels, frames into batch
        h = self.unet.conv_in(torch.cat([x_in, z_m.to(x_in.dtype)], dim=2).flatten(0, 1))
        # 3. down path with audio attention and ID residuals
        h, skips = self._down(h, ctx, id_feats)
        # 4. SVD's mid block, unchanged
        h = self._mid(h, ctx)
        # 5. up path with audio attention
        h = self._up(h, skips, ctx)
        # 6. SVD's output head
        u = self.unet
        h = u.conv_out(u.conv_act(u.conv_norm_out(h)))
        return h.reshape(b, t, *h.shape[1:])

    # ----------------------------------------------------------------------------------------------
    def _context(self, x_in: Tensor, c_noise: Tensor, audio: Tensor) -> _FrameContext:
        b, t = x_in.shape[:2]
        emb = self._time_embedding(c_noise, b, x_in.dtype).repeat_interleave(t, dim=0)
        tokens = self.audio_proj(audio.flatten(0, 1).to(x_in.dtype))  # (B*T, A, W)
        if self.audio_mode == "svd_crossattn":
            return _FrameContext(emb, tokens, x_in.new_zeros(b, t), None, t)
        # SVD's null image embedding: one zero token per frame for its CLIP cross-attention.
        clip = x_in.new_zeros(b * t, 1, _first(self.unet.config.cross_attention_dim))
        return _FrameContext(emb, clip, x_in.new_zeros(b, t), tokens, t)

    def _time_embedding(self, c_noise: Tensor, b: int, dtype: torch.dtype) -> Tensor:
        """SVD: emb = TimeEmbedding(sinusoid(c_noise)) + AddEmbedding(sinusoid(added time ids)), (B, 4*C0)."""
        u = self.unet
        emb = u.time_embedding(u.time_proj(c_noise.expand(b)).to(dtype))
        ids = self.added_time_ids.to(c_noise.device).expand(b, -1)
        time_embeds = u.add_time_proj(ids.flatten()).reshape(b, -1).to(emb.dtype)
        return emb + u.add_embedding(time_embeds)

    def _down(self, h: Tensor, ctx: _FrameContext, id_feats: Sequence[Tensor] | None) -> tuple[Tensor, list]:
        """SVD's down blocks; audio attention after each transformer; ID residual ending each level."""
        skips = [h]
        for level, (block, audio_layers) in enumerate(zip(self.unet.down_blocks, self.audio_down)):
            for j, resnet in enumerate(block.resnets):
                h = self._call(resnet, h, ctx.emb, ctx.indicator)
                h = self._attend(block, audio_layers, j, h, ctx)
                if j == len(block.resnets) - 1 and id_feats is not None and level < len(id_feats):
                    h = h + _per_frame(id_feats[level], ctx.frames).to(h.dtype)
                skips.append(h)
            if block.downsamplers is not None:
                h = block.downsamplers[0](h)
                skips.append(h)
        return h, skips

    def _mid(self, h: Tensor, ctx: _FrameContext) -> Tensor:
        mid = self.unet.mid_block
        h = self._call(mid.resnets[0], h, ctx.emb, ctx.indicator)
        for attn, resnet in zip(mid.attentions, mid.resnets[1:]):
            h = self._call(self._attention(attn), h, ctx.clip, ctx.indicator, False)[0]
            h = self._call(resnet, h, ctx.emb, ctx.indicator)
        return h

    def _up(self, h: Tensor, skips: list[Tensor], ctx: _FrameContext) -> Tensor:
        for block, audio_layers in zip(self.unet.up_blocks, self.audio_up):
            for j, resnet in enumerate(block.resnets):
                h = torch.cat([h, skips.pop()], dim=1)
                h = self._call(resnet, h, ctx.emb, ctx.indicator)
                h = self._attend(block, audio_layers, j, h, ctx)
            if block.upsamplers is not None:
                h = block.upsamplers[0](h, _upsample_size(h, skips[-1]))
        return h

    def _attend(self, block: nn.Module, audio_layers: nn.ModuleList, j: int, h: Tensor,
                ctx: _FrameContext) -> Tensor:
        """SVD's spatio-temporal transformer j of ``block`` (if any), then the new audio attention."""
        attentions = getattr(block, "attentions", None)
        if attentions is None:
            return h
        h = self._call(self._attention(attentions[j]), h, ctx.clip, ctx.indicator, False)[0]
        if len(audio_layers):
            h = self._call(self._attention(audio_layers[j]), h, ctx.audio)
        return h

    def _attention(self, module: nn.Module) -> Callable[..., Any]:
        """``module`` run under the configured SDPA kernels (itself for "auto")."""
        return module if self._sdpa is None else partial(_under_sdpa, self._sdpa, module)

    def _call(self, module: Callable[..., Any], *args: Any) -> Any:
        """Run a block, recomputing it in backward when gradient checkpointing is on."""
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return checkpoint(module, *args, use_reentrant=False)
        return module(*args)

    def _check(self, x_in: Tensor, c_noise: Tensor, cond: Mapping[str, Any]) -> tuple[Tensor, Tensor, Any]:
        if x_in.ndim != 5 or x_in.shape[2] != self.latent_channels:
            raise ValueError(f"x_in must be (B, T, {self.latent_channels}, h, w), got {tuple(x_in.shape)}")
        missing = [k for k in ("concat", "audio") if cond.get(k) is None]
        if missing:
            raise ValueError(f"cond is missing {missing}; a dropped audio condition is zeros, not None")
        z_m, audio, id_feats = cond["concat"], cond["audio"], cond.get("id")
        if z_m.shape != x_in.shape:
            raise ValueError(f"cond['concat'] must match x_in {tuple(x_in.shape)}, got {tuple(z_m.shape)}")
        d = self.audio_proj.in_features
        if audio.ndim != 4 or audio.shape[:2] != x_in.shape[:2] or audio.shape[-1] != d:
            raise ValueError(f"cond['audio'] must be (B, T, A, {d}) with B, T of x_in "
                             f"{tuple(x_in.shape[:2])}, got {tuple(audio.shape)}")
        if id_feats is not None:
            self._check_id(id_feats, x_in.shape[:2])
        if c_noise.shape not in ((), (1,), (x_in.shape[0],)):
            raise ValueError(f"c_noise must be (B,) = ({x_in.shape[0]},), got {tuple(c_noise.shape)}")
        return z_m, audio, id_feats


    def _check_id(self, id_feats: Sequence[Tensor], bt: torch.Size) -> None:
        if self.id_guider is None:
            raise ValueError("this net has no ID-Guider (built with id_guider=False): "
                             "cond['id'] must be None")
        levels = len(self.id_guider.block_out_channels)
        if len(id_feats) != levels:
            raise ValueError(f"cond['id'] must hold {levels} ID-Guider levels (from encode_reference), "
                             f"got {len(id_feats)}")
        for f in id_feats:
            if not ((f.ndim == 4 and f.shape[0] == bt[0]) or (f.ndim == 5 and f.shape[:2] == bt)):
                raise ValueError(f"cond['id'] levels must be (B, C, h, w) or per frame (B, T, C, h, w) with "
                                 f"B, T = {tuple(bt)}, got {tuple(f.shape)}")


def latent_mask(mask: Tensor, size: Sequence[int]) -> Tensor:
    """A pixel mask (B, T, 1, H, W) in [0, 1] at latent size (B, T, 1, h, w): a latent cell counts as masked
    as much as its most-masked pixel (max-pooling), so every cell that touches the edit is generated."""
    b, t = mask.shape[:2]
    pooled = torch.nn.functional.adaptive_max_pool2d(mask.flatten(0, 1).float(), tuple(int(s) for s in size))
    return pooled.unflatten(0, (b, t))


def _per_frame(feature: Tensor, frames: int) -> Tensor:
    """An ID level feature laid out like the UNet's (B*T, C, h, w) activations.

    (B, C, h, w): the paper's reference feature, shared by all frames of the sample (paper 3.3).
    (B, T, C, h, w): video fusion's per-frame features, added to their own frame.
    """
    return feature.flatten(0, 1) if feature.ndim == 5 else feature.repeat_interleave(frames, dim=0)


def _upsample_size(h: Tensor, skip: Tensor) -> torch.Size | None:
    """diffusers passes the skip's size to the upsampler only when 2x would not match it (odd sizes)."""
    return None if skip.shape[2:] == (2 * h.shape[2], 2 * h.shape[3]) else skip.shape[2:]


def _first(value: int | Sequence[int]) -> int:
    return value if isinstance(value, int) else int(value[0])


def _audio_layers(block: nn.Module, audio_width: int, enabled: bool) -> nn.ModuleList:
    """One :class:`AudioCrossAttention` per spatio-temporal transformer of ``block`` (none if it has none)."""
    attentions = getattr(block, "attentions", None)
    if not enabled or attentions is None:
        return nn.ModuleList()
    return nn.ModuleList(
        AudioCrossAttention(a.in_channels, audio_width, a.num_attention_heads) for a in attentions
    )


def default_block_types(n_levels: int, cross_attn_levels: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """SVD's layout: cross-attention at the first ``cross_attn_levels`` levels, mirrored on the up path."""
    return block_types(n_levels, range(cross_attn_levels))


def block_types(n_levels: int, attention_levels: Sequence[int]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Spatio-temporal transformers (and with them the audio layers) at the down levels listed, mirrored up.

    SVD puts them at its leading levels (:func:`default_block_types`); a small CPU model can keep them at
    the low-resolution level only, where attention is cheap (SPEC section 9's calibration).
    """
    levels = sorted({int(i) for i in attention_levels})
    if any(not 0 <= i < n_levels for i in levels):
        raise ValueError(f"attention_levels {list(attention_levels)} must index the {n_levels} UNet levels")
    down = tuple("CrossAttnDownBlockSpatioTemporal" if i in levels else "DownBlockSpatioTemporal"
                 for i in range(n_levels))
    up = tuple(d.replace("Down", "Up") for d in reversed(down))
    return down, up


def _to_channels_last(module: nn.Module) -> None:
    """2-D convolution weights (the 4-D parameters) in NHWC; a state dict loaded later is copied into it.

    ``Module.to(memory_format=...)`` cannot be used: SVD's temporal resnets hold 5-D Conv3d weights.
    """
    for param in module.parameters():
        if param.ndim == 4:
            param.data = param.data.contiguous(memory_format=torch.channels_last)


def _under_sdpa(backends: list[SDPBackend], module: nn.Module, *args: Any) -> Any:
    """Call ``module`` with only ``backends`` allowed for scaled_dot_product_attention."""
    with sdpa_kernel(backends):
        return module(*args)


def build_unet(
    block_out_channels: Sequence[int] = SVD_XT_WIDTHS,
    layers_per_block: int = 2,
    num_attention_heads: Sequence[int] | int = SVD_XT_HEADS,
    cross_attention_dim: int = 1024,
    cross_attn_levels: int | None = None,
    latent_channels: int = 4,
    num_frames: int = 25,
    attention_levels: Sequence[int] | None = None,
) -> UNetSpatioTemporalConditionModel:
    """A random-init diffusers SVD UNet; defaults are stable-video-diffusion-img2vid-xt's config.

    Attention sits at the first ``cross_attn_levels`` levels (SVD's layout, default all but the last) or,
    when ``attention_levels`` is given instead, at exactly those levels.
    """
    n = len(block_out_channels)
    if attention_levels is not None:
        if cross_attn_levels is not None:
            raise ValueError("give cross_attn_levels (leading levels, SVD's layout) or attention_levels, not both")
        down, up = block_types(n, attention_levels)
    else:
        down, up = default_block_types(n, n - 1 if cross_attn_levels is None else cross_attn_levels)
    return UNetSpatioTemporalConditionModel(
        in_channels=2 * latent_channels,
        out_channels=latent_channels,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=tuple(block_out_channels),
        layers_per_block=layers_per_block,
        num_attention_heads=num_attention_heads,
        cross_attention_dim=cross_attention_dim,
        num_frames=num_frames,
    )


def build_id_guider_for(unet: UNetSpatioTemporalConditionModel, downsample_factor: int = 8,
                        pixel_channels: int = 80) -> IDGuider:
    """An ID-Guider matching ``unet``: ResBlocks at its cross-attention levels, one feature per down level."""
    return IDGuider(*_guider_layout(unet), downsample_factor, pixel_channels)


def latent_id_guider_for(unet: UNetSpatioTemporalConditionModel) -> LatentIDGuider:
    """The "VAE Feature" ablation's ID-Guider for ``unet``: same pyramid, fed with the VAE latent."""
    return LatentIDGuider(*_guider_layout(unet), int(unet.config.out_channels))


def _guider_layout(unet: UNetSpatioTemporalConditionModel) -> tuple[tuple[int, ...], int, int]:
    """(widths, res_levels, layers_per_block): an output per UNet down level, ResBlocks at as many levels as
    the UNet has attention levels (SVD: its three cross-attention levels) and at least at all but the last."""
    cfg = unet.config
    widths = tuple(cfg.block_out_channels)
    attention = sum(t.startswith("CrossAttn") for t in cfg.down_block_types)
    return widths, max(attention, len(widths) - 1), _first(cfg.layers_per_block)


def build_net(
    block_out_channels: Sequence[int] = SVD_XT_WIDTHS,
    layers_per_block: int = 2,
    num_attention_heads: Sequence[int] | int = SVD_XT_HEADS,
    cross_attention_dim: int = 1024,
    cross_attn_levels: int | None = None,
    latent_channels: int = 4,
    vae_downsample_factor: int = 8,
    id_pixel_channels: int = 80,
    id_guider: bool | IDGuiderFactory = True,
    attention_levels: Sequence[int] | None = None,
    **net_kwargs: Any,
) -> LipSyncNet:
    """Random-init :class:`LipSyncNet` from widths; the defaults are the paper's full size (SVD-xt).

    ``id_guider``: True = the paper's pixel :class:`IDGuider`; False = none (ablation); or a factory
    ``unet -> ID-Guider`` such as :func:`latent_id_guider_for` ("VAE Feature" ablation; in a Hydra config
    ``{_target_: lipsync.models.net.latent_id_guider_for, _partial_: true}``).
    ``net_kwargs`` go to :class:`LipSyncNet` (audio_dim, audio_width, fps, motion_bucket_id,
    noise_aug_strength, gradient_checkpointing, audio_mode, video_fusion, attention_backend, channels_last).
    Tiny CPU size, e.g.:
    ``build_net((32, 64), 1, (2, 4), 32, cross_attn_levels=2, latent_channels=..., audio_width=32)``;
    ``attention_levels=[1]`` keeps attention (and the audio layers) at the low-resolution level only.
    """
    unet = build_unet(block_out_channels, layers_per_block, num_attention_heads, cross_attention_dim,
                      cross_attn_levels, latent_channels, attention_levels=attention_levels)
    if id_guider is True:
        guider: IDGuiderBase | None = build_id_guider_for(unet, vae_downsample_factor, id_pixel_channels)
    elif id_guider is False:
        guider = None
    else:
        guider = id_guider(unet)
    return LipSyncNet(unet, guider, **net_kwargs)

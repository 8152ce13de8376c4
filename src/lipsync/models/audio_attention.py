"""Per-frame audio cross-attention (paper section 3.4, SPEC section 2).

Queries are one frame's spatial latent tokens, keys/values are that frame's audio tokens (a window of
Whisper steps around the frame). The attention is spatial and per frame: the audio window already
carries the temporal context, and frame t never sees another frame's audio here.
"""

from __future__ import annotations

from diffusers.models.attention_processor import Attention
from torch import Tensor, nn


class AudioCrossAttention(nn.Module):
    """``h + Attn(LN(h_tokens), LN(audio))`` on each frame, zero-initialised output projection.

    Args:
        channels: width C of the UNet features it reads and writes.
        audio_width: width W of the projected audio tokens.
        heads: attention heads (the UNet level's own head count); ``channels`` must divide by it.

    Because ``to_out`` starts at zero (weight and bias), the layer is an exact identity at init, so a
    loaded SVD is unchanged at step 0 while gradients still reach ``to_out``.
    """

    def __init__(self, channels: int, audio_width: int, heads: int) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"audio attention width {channels} must be divisible by heads={heads}")
        self.norm = nn.LayerNorm(channels)
        self.attn = Attention(
            query_dim=channels,
            cross_attention_dim=audio_width,
            heads=heads,
            dim_head=channels // heads,
            cross_attention_norm="layer_norm",
            out_bias=True,
        )
        nn.init.zeros_(self.attn.to_out[0].weight)
        nn.init.zeros_(self.attn.to_out[0].bias)

    def forward(self, hidden: Tensor, audio: Tensor) -> Tensor:
        """Attend from each frame's spatial tokens to the same frame's audio tokens.

        Args:
            hidden: (B*T, C, h, w) UNet features, frames flattened into the batch (diffusers' layout).
            audio: (B*T, A, W) projected audio tokens, same frame order.

        Returns:
            (B*T, C, h, w) features with the audio residual added.
        """
        n, c, h, w = hidden.shape
        if audio.shape[0] != n:
            raise ValueError(f"audio tokens for {audio.shape[0]} frames but features for {n} frames")
        tokens = hidden.permute(0, 2, 3, 1).reshape(n, h * w, c)
        out = self.attn(self.norm(tokens), encoder_hidden_states=audio)
        return hidden + out.reshape(n, h, w, c).permute(0, 3, 1, 2).to(hidden.dtype)

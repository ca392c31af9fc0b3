"""A PyTorch reimplementation of the V-JEPA 2.1 encoder (`app/vjepa_2_1/models/vision_transformer.py` of
facebookresearch/vjepa2, as its hub loader builds it), written from the official code's documented
behaviour (reference/vjepa.md §2). It is NOT the official code, but was checked against it out of
tree (upstream commit be434e4, a random 12-layer ViT-B): bit-identical default, hierarchical and
per-block outputs in float32 and float64 on video, single-image, 384-px and non-square inputs.

Why a reimplementation: the official code cannot be installed from a package registry (there is no
`vjepa2` package, and the community fork `cc-vjepa2` predates 2.1) and transformers has no V-JEPA 2.1
model, yet parity needs a PyTorch twin that loads the release files. This module keeps the official
module names, so its state dict is exactly the release layout after stripping `module.backbone.`:
`img_mod_embed`, `video_mod_embed`, `patch_embed.proj`, `patch_embed_img.proj`,
`blocks.{i}.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}` and `norms_block.{0..3}`.

Behaviour kept from the hub configuration (`use_rope=True, img_temporal_dim_size=1,
interpolate_rope=True`, modality embeddings on, SDPA attention, exact GELU, LayerNorm eps 1e-6):
- a (B, C, 1, H, W) input goes through the (1, p, p) image tokenizer plus `img_mod_embed`; any other
  frame count through the (2, p, p) tubelet plus `video_mod_embed`;
- 3D RoPE on q and k with adjacent pairs and *interleaved* angles; positions are float32 (t, h, w)
  indices on the input's own grid, and h, w are rescaled as `h * (G - 1) / (Hp - 1)` (multiply first,
  in float32, G = 256/16 = 16 for patch 16 and 252/14 = 18 for patch 14); t is never rescaled;
- no final `norm`: the default output is `norms_block[3]` on the last block, the hierarchical
  output (`return_hierarchical` or `training=True`) the channel concat of `norms_block[j]` on block
  `hierarchical_layers[j]`.

Extensions for testing, none of which changes the default output: `output_hidden_states` returns the
embedding output then each block's output (un-normed), `output_attentions` computes the softmax
weights explicitly, and `hierarchical_layers` may be given (the official class fixes them by depth
for 12/24/40/48 only, the table below; other depths must pass them).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

HIERARCHICAL_LAYERS = {12: (2, 5, 8, 11), 24: (5, 11, 17, 23), 40: (9, 19, 29, 39), 48: (11, 23, 37, 47)}
PRETRAINED_GRID = {16: 256 // 16, 14: 252 // 14}


class PatchEmbed3D(nn.Module):
    def __init__(self, patch_size, tubelet_size, in_chans, embed_dim):
        super().__init__()
        kernel = (tubelet_size, patch_size, patch_size)
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=kernel, stride=kernel)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


def rotate(x, pos):
    """Interleaved RoPE on x (B, heads, N, d) by float positions pos (N,)."""
    d = x.shape[-1]
    omega = torch.arange(d // 2, dtype=x.dtype, device=x.device) / (d / 2.0)
    omega = 1.0 / 10000**omega
    freq = pos.to(x.dtype)[:, None] * omega
    sin, cos = freq.sin().repeat_interleave(2, dim=-1), freq.cos().repeat_interleave(2, dim=-1)
    y1, y2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    partner = torch.stack((-y2, y1), dim=-1).flatten(-2)
    return x * cos + partner * sin


class RoPEAttention(nn.Module):
    def __init__(self, dim, num_heads, qkv_bias=True):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, pos, return_attn=False):
        b, n, c = x.shape
        q, k, v = self.qkv(x).unflatten(-1, (3, self.num_heads, -1)).permute(2, 0, 3, 1, 4)
        s = 2 * ((self.head_dim // 3) // 2)

        def rope(z):
            parts = [rotate(z[..., i * s : (i + 1) * s], p) for i, p in enumerate(pos)]
            return torch.cat([*parts, z[..., 3 * s :]], dim=-1)

        q, k = rope(q), rope(k)
        attn = None
        if return_attn:
            attn = ((q @ k.transpose(-2, -1)) * self.head_dim**-0.5).softmax(dim=-1)
            x = attn @ v
        else:
            x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c)), attn


class MLP(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio, qkv_bias, eps):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = RoPEAttention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = MLP(dim, int(dim * mlp_ratio))

    def forward(self, x, pos, return_attn=False):
        y, attn = self.attn(self.norm1(x), pos, return_attn)
        x = x + y
        return x + self.mlp(self.norm2(x)), attn


class VisionTransformer(nn.Module):
    def __init__(
        self,
        img_size=384,
        patch_size=16,
        num_frames=64,
        tubelet_size=2,
        in_chans=3,
        embed_dim=768,
        depth=12,
        num_heads=12,
        mlp_ratio=4.0,
        qkv_bias=True,
        layer_norm_eps=1e-6,
        img_temporal_dim_size=1,
        interpolate_rope=True,
        hierarchical_layers=None,
        return_hierarchical=False,
    ):
        super().__init__()
        self.img_size, self.num_frames = img_size, num_frames  # recorded only: RoPE needs no table
        self.patch_size, self.tubelet_size = patch_size, tubelet_size
        self.img_temporal_dim_size = img_temporal_dim_size
        self.interpolate_rope = interpolate_rope
        self.pretrained_grid_size = PRETRAINED_GRID.get(patch_size) if interpolate_rope else None
        self.patch_embed = PatchEmbed3D(patch_size, tubelet_size, in_chans, embed_dim)
        self.patch_embed_img = PatchEmbed3D(patch_size, 1, in_chans, embed_dim)
        self.blocks = nn.ModuleList(
            [Block(embed_dim, num_heads, mlp_ratio, qkv_bias, layer_norm_eps) for _ in range(depth)]
        )
        if hierarchical_layers is None and depth not in HIERARCHICAL_LAYERS:
            raise ValueError(f"depth {depth} has no official hierarchical layers: pass hierarchical_layers")
        self.hierarchical_layers = list(hierarchical_layers or HIERARCHICAL_LAYERS[depth])
        self.norms_block = nn.ModuleList(
            [nn.LayerNorm(embed_dim, eps=layer_norm_eps) for _ in self.hierarchical_layers]
        )
        self.return_hierarchical = return_hierarchical
        self.img_mod_embed = nn.Parameter(1e-6 * torch.randn(1, 1, embed_dim))
        self.video_mod_embed = nn.Parameter(1e-6 * torch.randn(1, 1, embed_dim))

    def positions(self, frames, rows, cols, device=None):
        """Float32 (t, h, w) per token, flattened t-major; h and w rescaled onto the pretraining grid."""
        ids = torch.arange(frames * rows * cols, device=device)
        t = ids // (rows * cols)
        h = (ids - t * rows * cols) // cols
        w = ids - t * rows * cols - h * cols
        t, h, w = 1.0 * t, 1.0 * h, 1.0 * w
        if self.interpolate_rope:
            g = self.pretrained_grid_size
            h = h * (g - 1) / (rows - 1)
            w = w * (g - 1) / (cols - 1)
        return t, h, w

    def forward(self, x, training=False, output_hidden_states=False, output_attentions=False):
        if x.ndim != 5:
            raise ValueError(f"expected (B, C, T, H, W), got shape {tuple(x.shape)}")
        _, _, t, h, w = x.shape
        image = t == self.img_temporal_dim_size
        frames = t if image else t // self.tubelet_size
        rows, cols = h // self.patch_size, w // self.patch_size
        if image:
            x = self.patch_embed_img(x) + self.img_mod_embed.repeat(x.shape[0], 1, 1)
        else:
            x = self.patch_embed(x) + self.video_mod_embed.repeat(x.shape[0], 1, 1)
        pos = self.positions(frames, rows, cols, x.device)
        hidden, attns = [x], []
        for blk in self.blocks:
            x, attn = blk(x, pos, output_attentions)
            hidden.append(x)
            attns.append(attn)
        if training or self.return_hierarchical:
            out = torch.cat(
                [
                    norm(hidden[i + 1])
                    for norm, i in zip(self.norms_block, self.hierarchical_layers, strict=True)
                ],
                dim=2,
            )
        else:
            out = self.norms_block[-1](x)
        if not (output_hidden_states or output_attentions):
            return out
        return out, hidden, (attns if output_attentions else None)

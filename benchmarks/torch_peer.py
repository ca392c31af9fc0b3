"""The PyTorch side of `train_throughput.py`: what the transformers (+ peft) twin computes for one
training step (the family's clip embedding and the triplet loss), per-block recompute for a twin
without transformers' checkpointing, and the names of the SDPA kernels the profiler reports."""

from __future__ import annotations

import torch

from jaxbgs import losses

SDPA_OPS = (  # aten op name fragments -> the kernel PyTorch's SDPA dispatched to
    ("_scaled_dot_product_flash_attention_for_cpu", "flash (cpu)"),
    ("_scaled_dot_product_cudnn_attention", "cudnn"),
    ("_scaled_dot_product_flash_attention", "flash"),
    ("_efficient_attention", "mem_efficient"),
    ("_scaled_dot_product_attention_math", "math"),
)


class Remat(torch.nn.Module):
    """Per-block recompute for a twin without transformers' `gradient_checkpointing_enable` (V-JEPA 2.1)."""

    def __init__(self, block):
        super().__init__()
        self.block = block

    def forward(self, *args):
        return torch.utils.checkpoint.checkpoint(self.block, *args, use_reentrant=False)


def torch_embedding(arch: str, model, x):
    """The clip embedding the jaxbgs family computes, from (N, T, H, W, C) normalised device pixels:
    mean of the final tokens, TimeSformer's final CLS token, CLIP's pooled frames averaged per clip.
    (`backbone_step.torch_tokens` takes host numpy inputs and returns tokens, hence this variant.)"""
    if arch == "vjepa2":
        return model(
            pixel_values_videos=x.permute(0, 1, 4, 2, 3), skip_predictor=True
        ).last_hidden_state.mean(1)
    if arch == "vjepa21":
        return model(x.permute(0, 4, 1, 2, 3)).mean(1)
    if arch == "clip":
        n, t = x.shape[:2]
        tower = getattr(model, "vision_model", model)
        return tower(pixel_values=x.flatten(0, 1).permute(0, 3, 1, 2)).pooler_output.reshape(n, t, -1).mean(1)
    tokens = model(pixel_values=x.permute(0, 1, 4, 2, 3)).last_hidden_state
    return tokens[:, 0] if arch == "timesformer" else tokens.mean(1)


def torch_triplet(emb, b: int, margin: float = losses.MARGIN):
    """`jaxbgs.losses.triplet_loss` for rows [anchors; positives; negatives], all trials valid."""
    z = torch.nn.functional.normalize(emb.float(), dim=-1, eps=1e-8)
    a, p, n = z[:b], z[b : 2 * b], z[2 * b :]
    return torch.relu((a * n).sum(-1) - (a * p).sum(-1) + margin).mean()

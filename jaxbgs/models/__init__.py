"""Pure Flax NNX backbones, one file per family, each mirroring a PyTorch class.

Every backbone module defines `Config` (a frozen `BackboneConfig`), `Model(cfg, *, lora, rngs)`
returning `layers.Output`, and `preprocess`; `llama` (the SocialFusion LLM) has its own `Config`,
returns `llama.CausalLMOutput` and offers `load_tokenizer` instead.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from flax import nnx

from jaxbgs.errors import InputError
from jaxbgs.lora import LoRAConfig

ARCHS = ("vjepa2", "vjepa21", "timesformer", "videomae", "clip", "bert", "llama", "dinov2", "siglip")


def family(arch: str) -> ModuleType:
    if arch not in ARCHS:
        raise InputError(f"unknown architecture {arch!r}", where="arch", fix=f"choose from {list(ARCHS)}")
    return importlib.import_module(f"jaxbgs.models.{arch}")


def build(arch: str, config, *, lora: LoRAConfig | None = None, seed: int = 0) -> nnx.Module:
    """A randomly initialised model; load weights with `checkpoints_convert.load`."""
    return family(arch).Model(config, lora=lora, rngs=nnx.Rngs(seed))

"""What each architecture family tells the converter: its key map, how its HF config maps to the
Flax config, how to build and run its PyTorch twin, and how to write a PyTorch export.

Each `checkpoints_convert/<arch>.py` defines `FAMILY = Family(...)`.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from flax import nnx

from checkpoints_convert.core import KeyMap, Meta
from jaxbgs.errors import InputError
from jaxbgs.models import ARCHS


def video_input(cfg, frames: int | None, size: int | None, seed: int, batch: int = 2) -> dict:
    """Seeded normal pixels (B, T, H, W, C) at the config's own frame count and size by default."""
    frames = frames or getattr(cfg, "frames_per_clip", None) or cfg.num_frames
    size = size or getattr(cfg, "crop_size", None) or cfg.image_size
    rng = np.random.default_rng(seed)
    return {"pixels": rng.standard_normal((batch, frames, size, size, 3)).astype(np.float32)}


@nnx.jit
def _forward(model, pixels):
    return model(pixels)


def flax_video_forward(model, inputs: dict):
    """(final tokens, hidden states) of a Flax backbone, for comparison with the PyTorch twin."""
    out = _forward(model, inputs["pixels"])
    return np.asarray(out.tokens), [np.asarray(h) for h in out.hidden_states]


def hf_video_forward(model, inputs: dict):
    """(last_hidden_state, hidden_states) of a transformers video model fed `pixel_values` (B, T, C, H, W)."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(inputs["pixels"].transpose(0, 1, 4, 2, 3)))
    out = model(pixel_values=x, output_hidden_states=True)
    return out.last_hidden_state.numpy(), [h.numpy() for h in out.hidden_states]


def write_hf_dir(dst: Path, state: dict[str, np.ndarray], meta: Meta, family: Family) -> None:
    """A Hugging Face directory: config.json (the source's, or rebuilt) and model.safetensors."""
    from safetensors.numpy import save_file

    hf_config = dict(meta.hf_config or family.hf_config(family.config(meta)))
    if family.torch_class:
        hf_config["architectures"] = [family.torch_class]
    (dst / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")
    save_file(
        {k: np.asarray(v, dtype=np.float32, order="C") for k, v in state.items()},
        str(dst / "model.safetensors"),
    )


@dataclasses.dataclass(frozen=True)
class Family:
    arch: str
    key_map: KeyMap
    # HF config dict (None for release files) + source state -> the family's Flax Config.
    config_from_hf: Callable[[dict | None, dict], Any]
    # Flax Config -> HF config dict, for building PyTorch twins of tiny configs and for exports.
    hf_config: Callable[[Any], dict]
    # HF config dict -> PyTorch model (eval mode, float32, random weights).
    torch_model: Callable[[dict], Any]
    # (PyTorch model, inputs) -> (final tokens, hidden states) as numpy, same layout as flax_forward.
    torch_forward: Callable[[Any, dict], tuple[np.ndarray, list[np.ndarray]]]
    # (Flax config, frames, size, seed) -> a dict of seeded numpy inputs.
    example_input: Callable[..., dict] = video_input
    flax_forward: Callable[[Any, dict], tuple[np.ndarray, list[np.ndarray]]] = flax_video_forward
    # Release files (.pt) -> flat state dict; None for plain state dicts.
    unwrap: Callable[[dict, Path], dict] | None = None
    # Export writer and the `architectures` entry of an exported config.json.
    write_torch: Callable[[Path, dict, Meta, Family], None] = write_hf_dir
    torch_class: str | None = None

    @property
    def model_module(self):
        from jaxbgs import models

        return models.family(self.arch)

    def config(self, meta: Meta):
        return self.model_module.Config.from_json(meta.config)

    def torch_from_state(self, hf_config: dict, state: dict[str, np.ndarray]):
        """The PyTorch twin with the checkpoint's own weights loaded (only ignored keys may be left)."""
        import torch

        model = self.torch_model(hf_config)
        tensors = {k: torch.from_numpy(np.asarray(v)) for k, v in self.key_map.prepare(state).items()}
        tensors = {k: v for k, v in tensors.items() if not self.key_map.ignored(k)}
        missing, unexpected = model.load_state_dict(tensors, strict=False)
        if missing or unexpected:
            raise InputError(
                f"PyTorch twin does not match the checkpoint: missing {missing[:5]}, "
                f"unexpected {unexpected[:5]}",
                fix="check --arch",
            )
        return model.eval().float()


def get(arch: str) -> Family:
    if arch not in ARCHS:
        raise InputError(f"unknown architecture {arch!r}", where="--arch", fix=f"choose from {list(ARCHS)}")
    return importlib.import_module(f"checkpoints_convert.{arch}").FAMILY

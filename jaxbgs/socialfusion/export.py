"""SocialFusion (paper §3, Fig. 3) -> PyTorch: the trained parts of a `SocialFusion` as a directory that
PyTorch users load without JAX.

The export holds only what training changed; the frozen Llama stays the user's own Hugging Face copy
(`meta-llama/Llama-3.2-1B`, named in the adapter config when known), so a 1B-parameter base is never
copied per run:
- `adapter/`: the LLM's LoRA adapters in PEFT format, for `peft.PeftModel.from_pretrained` on a
  transformers `LlamaForCausalLM` (`load_peft_llm`);
- `socialfusion.safetensors`: the connector as torch `nn.Sequential(Linear, ReLU, Linear, ReLU, Linear)`
  (`connector.0/2/4.weight|bias`), `box_embedding` (d_llm,), and the gaze head as `nn.Linear`
  (`gaze.proj.*`) plus `nn.ConvTranspose2d(C, 1, 2, 2)` (`gaze.up.*`), in torch layouts, float32;
- `config.json`: the sizes that rebuild the PyTorch side, the LLM's transformers `LlamaConfig` included.

The PyTorch twin mirrors `jaxbgs.socialfusion.model` (its `Connector`, box embedding and `GazeHead`):
`torch_heads` loads it from the directory and `torch_forward` runs the whole model on the torch side.
torch, peft and transformers are imported inside the functions that need them, so `to_torch` runs
without torch. Names map through a declarative key map (`KEY_MAP`), as in `checkpoints_convert`.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from checkpoints_convert import core
from jaxbgs.errors import InputError
from jaxbgs.files import atomic_path
from jaxbgs.lora import LoRAParam, TrainableParam
from jaxbgs.socialfusion.model import SocialFusion

FORMAT = 1
ADAPTER = "adapter"
WEIGHTS = "socialfusion.safetensors"
CONFIG = "config.json"
SIZES = ("feature_dim", "grid", "connector_hidden", "hidden_size", "gaze_channels", "heatmap")
PEFT_FILES = ("adapter_config.json", "adapter_model.safetensors")

# Flax (kh, kw, in, out) <-> torch ConvTranspose2d (in, out, kh, kw); swapping the pairs is self-inverse.
CONV_TRANSPOSE = core.Transform(
    "conv_transpose", lambda w: w.transpose(2, 3, 0, 1), lambda w: w.transpose(2, 3, 0, 1)
)
KEY_MAP = core.KeyMap(
    rules=(
        # The Sequential's ReLUs take indices 1 and 3, so the Linears are 0, 2 and 4.
        *(r for k in range(3) for r in core.linear_rules(f"connector.{2 * k}", f"connector.layers.{k}")),
        core.Rule("box_embedding", "box_embedding"),
        *core.linear_rules("gaze.proj", "gaze.proj"),
        core.Rule("gaze.up.weight", "gaze.up_kernel", CONV_TRANSPOSE),
        core.Rule("gaze.up.bias", "gaze.up_bias"),
    )
)


def head_state(model: SocialFusion) -> dict[str, np.ndarray]:
    """Every trainable non-adapter parameter under its PyTorch name; one without a rule is an error."""
    adapters = set(core.flat_params(model, LoRAParam))
    flax = {k: v for k, v in core.flat_params(model, TrainableParam).items() if k not in adapters}
    return {
        k: np.ascontiguousarray(v, dtype=np.float32) for k, v in core.apply_to_torch(flax, KEY_MAP).items()
    }


def export_config(model: SocialFusion) -> dict:
    """The sizes of the PyTorch side; the LLM's are read from `model.llm`, the weights' own config."""
    from checkpoints_convert import llama as llama_convert

    cfg, llm = model.cfg, model.llm
    return {
        "format": FORMAT,
        "model": "SocialFusion",
        **{k: getattr(cfg, k) for k in SIZES if k != "hidden_size"},
        "hidden_size": llm.cfg.hidden_size,
        "lora_rank": llm.lora.rank,
        "lora_alpha": llm.lora.alpha,
        "llm": {**llama_convert.hf_config(llm.cfg), "architectures": ["LlamaForCausalLM"]},
    }


def to_torch(model: SocialFusion, dst, *, source: str | None = None) -> Path:
    """Write the export directory (see the module docstring) atomically; returns its absolute path.

    `source` (the base Llama's Hub id or path) goes into the adapter config's
    `base_model_name_or_path`, which PEFT uses only when no base model is passed in.
    """
    from safetensors.numpy import save_file

    from checkpoints_convert import convert

    llm = model.llm
    if llm.lora is None:
        raise InputError(
            "the model's LLM has no LoRA adapters", where="SocialFusion.llm", fix="build it with cfg.lora"
        )
    meta = core.Meta(arch="llama", config=llm.cfg.to_json(), lora=llm.lora.to_json(), source=source)
    adapter_config, adapters = convert.peft_adapters(llm, meta)
    heads, config = head_state(model), export_config(model)
    dst = Path(dst).absolute()
    with atomic_path(dst, directory=True) as tmp:
        (tmp / ADAPTER).mkdir()
        (tmp / ADAPTER / PEFT_FILES[0]).write_text(json.dumps(adapter_config, indent=2) + "\n")
        save_file(adapters, str(tmp / ADAPTER / PEFT_FILES[1]), metadata={"format": "pt"})
        save_file(heads, str(tmp / WEIGHTS), metadata={"format": "pt"})
        (tmp / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    return dst


# --------------------------------------------------------------------------- the PyTorch side


def read_config(dst) -> dict:
    dst = Path(dst).expanduser()
    if not dst.is_dir():
        raise InputError(
            "no such export directory", file=dst, fix="write one with jaxbgs.socialfusion.export.to_torch"
        )
    path = dst / CONFIG
    if not path.is_file():
        raise InputError(f"missing {CONFIG}", file=dst, fix="export the model again (to_torch)")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"not valid JSON ({e})", file=path) from e
    if config.get("format") != FORMAT:
        raise InputError(f"format {config.get('format')!r}, expected {FORMAT}", file=path, where="format")
    for key in (*SIZES, "llm"):
        if key not in config:
            raise InputError("missing key", file=path, where=key, fix="export the model again (to_torch)")
    return config


@functools.cache
def _twin():
    """The PyTorch classes, built on first use so that importing this module does not need torch."""
    import torch
    from torch import nn

    class GazeHead(nn.Module):
        """Twin of `model.GazeHead`: Linear -> (C, grid, grid) -> ConvTranspose2d(C, 1, 2, 2) -> bilinear."""

        def __init__(self, d_in: int, channels: int, grid: int, out: int):
            super().__init__()
            self.grid, self.out = grid, out
            self.proj = nn.Linear(d_in, channels)
            self.up = nn.ConvTranspose2d(channels, 1, kernel_size=2, stride=2)

        def forward(self, tokens):
            """(B, grid*grid, d) image-token states -> (B, out, out) logits."""
            b, g = tokens.shape[0], self.grid
            x = self.proj(tokens).reshape(b, g, g, -1).permute(0, 3, 1, 2)
            y = nn.functional.interpolate(
                self.up(x), size=(self.out, self.out), mode="bilinear", align_corners=False
            )
            return y[:, 0]

    class Heads(nn.Module):
        """The connector, box embedding and gaze head of a SocialFusion export."""

        def __init__(self, config: dict):
            super().__init__()
            d_v, hidden, d = config["feature_dim"], config["connector_hidden"], config["hidden_size"]
            self.grid = config["grid"]
            self.connector = nn.Sequential(
                nn.Linear(d_v, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, d)
            )
            self.box_embedding = nn.Parameter(torch.zeros(d))  # filled by `torch_heads`
            self.gaze = GazeHead(d, config["gaze_channels"], config["grid"], config["heatmap"])

        def forward(self, features, patch_mask):
            """(B, grid*grid, d_v) patch features and the (B, grid*grid) `model.box_mask` -> image tokens."""
            return self.connector(features) + patch_mask[..., None].to(features.dtype) * self.box_embedding

    return Heads


def torch_heads(dst):
    """The connector, box embedding and gaze head of an export as one `torch.nn.Module` (eval mode)."""
    import torch
    from safetensors.numpy import load_file

    config = read_config(dst)
    path = Path(dst).expanduser() / WEIGHTS
    if not path.is_file():
        raise InputError(f"missing {WEIGHTS}", file=path.parent, fix="export the model again (to_torch)")
    try:
        state = load_file(str(path))
    except Exception as e:
        raise InputError(f"cannot read the weights ({type(e).__name__}: {str(e)[:200]})", file=path) from e
    heads = _twin()(config)
    expected = {k: tuple(v.shape) for k, v in heads.state_dict().items()}
    problems = [f"missing key {k}" for k in expected if k not in state]
    problems += [f"unexpected key {k}" for k in state if k not in expected]
    problems += [
        f"key {k} has shape {tuple(v.shape)}, expected {expected[k]}"
        for k, v in state.items()
        if k in expected and tuple(v.shape) != expected[k]
    ]
    if problems:
        raise InputError(
            "; ".join(problems),
            file=path,
            fix=f"the weights do not match {CONFIG}; export the model again (to_torch)",
        )
    heads.load_state_dict({k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in state.items()})
    return heads.eval()


def load_peft_llm(base_model, dst):
    """`base_model` (a transformers `LlamaForCausalLM` with the frozen base weights) wrapped with the
    export's adapters by `peft.PeftModel.from_pretrained`; the adapters are injected into it in place."""
    from peft import PeftModel

    config = read_config(dst)
    adapter = Path(dst).expanduser() / ADAPTER
    for name in PEFT_FILES:
        if not (adapter / name).is_file():
            raise InputError(f"missing {name}", file=adapter, fix="export the model again (to_torch)")
    ours = config["llm"]
    for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_key_value_heads"):
        theirs = getattr(base_model.config, key, None)
        if theirs != ours.get(key):
            raise InputError(
                f"the base model has {key}={theirs}, the export was trained on {ours.get(key)}",
                file=Path(dst) / CONFIG,
                where=f"llm.{key}",
                fix="pass the Llama the model was trained from (adapter_config.json base_model_name_or_path)",
            )
    return PeftModel.from_pretrained(base_model, adapter).eval()


def torch_forward(heads, llm, features, tokens, token_mask, patch_mask):
    """`SocialFusion.__call__` on the torch side: (answer logits (B, vocab), gaze logits (B, heatmap,
    heatmap)). `tokens` left-padded as in JAX (`token_mask` False on padding); `patch_mask` is
    `model.box_mask(boxes, valid, grid)`, (B, grid*grid)."""
    import torch

    z = heads(features, patch_mask)
    seq = torch.cat([llm.get_input_embeddings()(tokens), z.to(llm.dtype)], dim=1)
    mask = torch.cat([token_mask.bool(), torch.ones(z.shape[:2], dtype=torch.bool, device=z.device)], dim=1)
    positions = (mask.long().cumsum(1) - 1).clamp(min=0)  # real tokens count from 0, as in JAX
    out = llm(
        inputs_embeds=seq, attention_mask=mask.long(), position_ids=positions, output_hidden_states=True
    )
    n = heads.grid * heads.grid
    return out.logits[:, -1].float(), heads.gaze(out.hidden_states[-1][:, -n:].float())

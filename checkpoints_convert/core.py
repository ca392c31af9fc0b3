"""The conversion machinery shared by every family: declarative key maps, strict application,
reading PyTorch checkpoints, and the on-disk Flax format.

A Flax checkpoint directory holds
- `jaxbgs_config.json`: arch, model config, LoRA config, the source's HF `config.json`, provenance;
- `params/`: an orbax checkpoint of every `nnx.Param` (base, adapters, heads), the parameters of
  repeated blocks stacked on a leading layer axis (`blocks.layer.attn.qkv.kernel`, (L, ...)) since
  FORMAT 2; FORMAT 1 held one entry per layer (`blocks.3.attn.qkv.kernel`) and is read by stacking;
- `passthrough.safetensors` (optional): source tensors the Flax model does not use but an export
  must give back (e.g. the V-JEPA 2 predictor), stored untouched.
Every write goes to a temporary sibling renamed at the end, so a failure leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from jaxbgs import stacked
from jaxbgs.errors import InputError
from jaxbgs.files import atomic_path
from jaxbgs.lora import LoRAConfig, TrainableParam

FORMAT = 2  # 2: stacked blocks (1: one entry per layer, still read)
READABLE = (1, 2)
CONFIG_FILE = "jaxbgs_config.json"
PASSTHROUGH = "passthrough.safetensors"


# --------------------------------------------------------------------------- key maps


@dataclasses.dataclass(frozen=True)
class Transform:
    """A tensor transform and its inverse (PyTorch layout <-> Flax layout)."""

    name: str
    to_flax: Callable[[np.ndarray], np.ndarray]
    to_torch: Callable[[np.ndarray], np.ndarray]


IDENTITY = Transform("identity", lambda w: w, lambda w: w)
LINEAR = Transform("linear", lambda w: w.T, lambda w: w.T)  # (out, in) <-> (in, out)
CONV = Transform(  # (O, I, *k) <-> (*k, I, O)
    "conv",
    lambda w: w.transpose(*range(2, w.ndim), 1, 0),
    lambda w: w.transpose(w.ndim - 1, w.ndim - 2, *range(w.ndim - 2)),
)


def _pattern(template: str) -> re.Pattern:
    out = re.escape(template)
    for name in re.findall(r"\{(\w+)\}", template):
        out = out.replace(re.escape("{" + name + "}"), f"(?P<{name}>\\d+)", 1)
    return re.compile(out + "$")


@dataclasses.dataclass(frozen=True)
class Rule:
    """`torch` and `flax` key templates with `{i}`-style integer fields, and the tensor transform."""

    torch: str
    flax: str
    transform: Transform = IDENTITY

    def __post_init__(self):
        object.__setattr__(self, "_torch_re", _pattern(self.torch))
        object.__setattr__(self, "_flax_re", _pattern(self.flax))


def linear_rules(torch: str, flax: str) -> tuple[Rule, Rule]:
    """A PyTorch Linear (`weight`, `bias`) onto a `Dense` (`kernel`, `bias`)."""
    return Rule(f"{torch}.weight", f"{flax}.kernel", LINEAR), Rule(f"{torch}.bias", f"{flax}.bias")


def norm_rules(torch: str, flax: str) -> tuple[Rule, Rule]:
    """A PyTorch LayerNorm (`weight`, `bias`) onto an `nnx.LayerNorm` (`scale`, `bias`)."""
    return Rule(f"{torch}.weight", f"{flax}.scale"), Rule(f"{torch}.bias", f"{flax}.bias")


@dataclasses.dataclass(frozen=True)
class KeyMap:
    """Rules in both directions, and what to do with source keys the Flax model does not hold.

    `strip`: prefixes removed from source keys first (a task model's base-model prefix such as
    `vjepa2.`); `keep`: regexes of tensors carried untouched to the export (the V-JEPA 2
    predictor); `ignore`: regexes of tensors dropped on purpose (classifier heads); `rename`:
    (regex, replacement) pairs applied after stripping, for on-disk names that PyTorch renames at
    load time (VideoMAE's `q_bias`).
    """

    rules: tuple[Rule, ...]
    ignore: tuple[str, ...] = ()
    keep: tuple[str, ...] = ()
    strip: tuple[str, ...] = ()
    rename: tuple[tuple[str, str], ...] = ()

    def prepare(self, state: dict) -> dict:
        out = {}
        for k, v in state.items():
            for p in self.strip:
                if k.startswith(p):
                    k = k[len(p) :]
                    break
            for pattern, replacement in self.rename:
                k = re.sub(pattern, replacement, k)
            if k in out:
                raise InputError(f"key {k} appears twice after normalising the names (prefixes {self.strip})")
            out[k] = v
        return out

    def kept(self, key: str) -> bool:
        return any(re.match(p, key) for p in self.keep)

    def torch_to_flax(self, key: str) -> tuple[str, Transform] | None:
        for r in self.rules:
            if m := r._torch_re.match(key):
                return r.flax.format(**m.groupdict()), r.transform
        return None

    def flax_to_torch(self, key: str) -> tuple[str, Transform] | None:
        for r in self.rules:
            if m := r._flax_re.match(key):
                return r.torch.format(**m.groupdict()), r.transform
        return None

    def ignored(self, key: str) -> bool:
        return any(re.match(p, key) for p in self.ignore)


def _listing(keys, limit=8) -> str:
    keys = sorted(keys)
    more = f" ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def apply_to_flax(
    state: dict[str, np.ndarray], key_map: KeyMap, expected: dict[str, tuple], *, source: object = None
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Strictly map a PyTorch state dict onto the expected Flax keys and shapes.

    Returns (flax params, passthrough tensors). Raises one `InputError` naming every unknown source
    key, every target left empty and every shape mismatch.
    """
    out, passthrough, unknown, bad_shape, bad_value, bad_keys = {}, {}, [], [], [], set()
    for key, value in key_map.prepare(state).items():
        if key_map.kept(key):
            passthrough[key] = value
            continue
        if key_map.ignored(key):
            continue
        hit = key_map.torch_to_flax(key)
        if hit is None or hit[0] not in expected:
            unknown.append(key)
            continue
        fkey, transform = hit
        value = transform.to_flax(np.asarray(value))
        if tuple(value.shape) != tuple(expected[fkey]):
            bad_shape.append(f"{key} {tuple(value.shape)} -> {fkey} expects {tuple(expected[fkey])}")
            bad_keys.add(fkey)
            continue
        if value.dtype.kind != "f" or not np.isfinite(value).all():  # a parameter is finite floats
            bad_value.append(f"{key} ({value.dtype})" if value.dtype.kind != "f" else f"{key} (NaN or Inf)")
            bad_keys.add(fkey)
            continue
        out[fkey] = value
    missing = [k for k in expected if k not in out and k not in bad_keys]
    problems = []
    if unknown:
        problems.append(f"{len(unknown)} unexpected source key(s): {_listing(unknown)}")
    if missing:
        torch_names = [(key_map.flax_to_torch(k) or (k,))[0] for k in missing]
        problems.append(f"{len(missing)} missing key(s): {_listing(torch_names)}")
    if bad_shape:
        problems.append(f"{len(bad_shape)} shape mismatch(es): {_listing(bad_shape, 4)}")
    if bad_value:
        problems.append(f"{len(bad_value)} tensor(s) not finite floating point: {_listing(bad_value, 4)}")
    if problems:
        raise InputError(
            "checkpoint does not match the architecture: " + "; ".join(problems),
            file=source,
            fix="check --arch and that the config matches the weights (layers, width, heads)",
        )
    return out, passthrough


def apply_to_torch(params: dict[str, np.ndarray], key_map: KeyMap) -> dict[str, np.ndarray]:
    out = {}
    for key, value in params.items():
        hit = key_map.flax_to_torch(key)
        if hit is None:
            raise InputError(f"no PyTorch name for Flax parameter {key}", fix="extend the family's key map")
        tkey, transform = hit
        out[tkey] = np.asarray(transform.to_torch(np.asarray(value)), order="C")
    return out


# --------------------------------------------------------------------------- Flax state


def _dotted(path) -> str:
    return ".".join(str(p) for p in path)


def flat_params(model: nnx.Module, kind=nnx.Param) -> dict[str, np.ndarray]:
    """Dotted-path -> array for every variable of `kind`, stacked layers one key per layer
    (`blocks.3.attn.qkv.kernel`; see `jaxbgs.stacked`): the names key maps and exports use."""
    out, arrays = {}, {}
    for path, var, layer in stacked.flat(model, kind):
        value = arrays.setdefault(id(var), np.asarray(var[...]))
        out[_dotted(path)] = value if layer is None else value[layer]
    return out


def param_shapes(model: nnx.Module, kind=nnx.Param) -> dict[str, tuple]:
    """Dotted-path -> shape of every variable of `kind`, per layer as `flat_params` names them."""
    return {
        _dotted(path): tuple(var.shape[1:] if layer is not None else var.shape)
        for path, var, layer in stacked.flat(model, kind)
    }


def base_shapes(model: nnx.Module) -> dict[str, tuple]:
    """Shapes of the frozen base parameters, per layer: what a PyTorch checkpoint must fill."""
    return param_shapes(model, nnx.All(nnx.Param, nnx.Not(TrainableParam)))


def assign(model: nnx.Module, params: dict[str, np.ndarray]) -> nnx.Module:
    """Write dotted-path arrays (per-layer names, as `flat_params` gives them) into the model's
    variables, in the variable's dtype; the layers of a stacked variable are gathered along axis 0."""
    index = {_dotted(path): (var, layer) for path, var, layer in stacked.flat(model, nnx.Param)}
    rows: dict[int, tuple[nnx.Variable, dict[int, np.ndarray]]] = {}
    for key, value in params.items():
        var, layer = index[key]
        if layer is None:
            var[...] = np.asarray(value, dtype=var[...].dtype)
        else:
            rows.setdefault(id(var), (var, {}))[1][layer] = value
    for var, layers in rows.values():
        dtype = var[...].dtype
        if len(layers) == var.shape[0]:
            var[...] = np.stack([np.asarray(layers[i], dtype=dtype) for i in range(var.shape[0])])
        else:
            whole = np.array(var[...])
            for i, value in layers.items():
                whole[i] = np.asarray(value, dtype=dtype)
            var[...] = whole
    return model


# --------------------------------------------------------------------------- reading PyTorch checkpoints


def _load_torch_file(path: Path) -> dict:
    try:
        import torch
    except ImportError as e:  # pragma: no cover - torch is in the [torch] extra
        raise InputError("reading PyTorch checkpoints needs torch", fix='pip install -e ".[torch]"') from e
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise InputError(
            f"cannot read the checkpoint ({type(e).__name__}: {str(e)[:200]})",
            file=path,
            fix="the file is truncated or corrupt; download it again",
        ) from e


def _to_numpy(state: dict, path: Path) -> dict[str, np.ndarray]:
    import torch

    out = {}
    for k, v in state.items():
        if not isinstance(v, torch.Tensor):
            raise InputError(f"entry {k!r} is a {type(v).__name__}, not a tensor", file=path)
        out[k] = v.detach().to(torch.float32).numpy() if v.is_floating_point() else v.numpy()
    return out


def read_checkpoint(src: str | Path, *, unwrap: Callable[[dict, Path], dict] | None = None):
    """Read a local PyTorch checkpoint: a HF directory (config.json plus model.safetensors,
    pytorch_model.bin or a sharded index), a Hub id in the local cache, or one .pt/.pth/.bin/
    .safetensors file. Returns (state dict of numpy arrays, HF config dict or None, resolved path)."""
    from jaxbgs.eval.language import PACKAGED, resolve_model_dir

    path = Path(src).expanduser()
    if path.is_file():
        obj = _load_torch_file(path)
        state = unwrap(obj, path) if unwrap else obj
        return _to_numpy(state, path), None, path
    hub_id = re.fullmatch(r"[\w.-]+/[\w.-]+", str(src)) or str(src).lower() in PACKAGED
    if not path.exists() and not hub_id:
        raise InputError(
            "no such file or directory", file=src, fix="pass a local checkpoint path or HF cache id"
        )
    model_dir = resolve_model_dir(str(src)) if not path.is_dir() else path
    cfg_file = model_dir / "config.json"
    if not cfg_file.is_file():
        raise InputError("missing config.json", file=model_dir, fix="pass a Hugging Face model directory")
    try:
        hf_config = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"config.json is not valid JSON ({e})", file=cfg_file) from e
    files = []
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (model_dir / index).is_file():
            try:
                weight_map = json.loads((model_dir / index).read_text())["weight_map"]
                files = [model_dir / f for f in sorted(set(weight_map.values()))]
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                raise InputError(
                    f"not a shard index ({type(e).__name__}: {e})", file=model_dir / index,
                    fix="download the model directory again (the index maps weight names to shard files)",
                ) from None  # fmt: skip
            break
    else:
        files = [
            model_dir / f for f in ("model.safetensors", "pytorch_model.bin") if (model_dir / f).is_file()
        ][:1]
    if not files:
        raise InputError(
            "no weights (model.safetensors, pytorch_model.bin or a sharded index)",
            file=model_dir,
            fix="download the full model directory",
        )
    state = {}
    for f in files:
        if not f.is_file():
            raise InputError("weight shard listed in the index is missing", file=f)
        state.update(_to_numpy(_load_torch_file(f), f))
    return state, hf_config, model_dir


def strip_prefixes(state: dict, prefixes=("module.", "backbone.")) -> dict:
    out = {}
    for k, v in state.items():
        changed = True
        while changed:
            changed = False
            for p in prefixes:
                if k.startswith(p):
                    k, changed = k[len(p) :], True
        out[k] = v
    return out


# --------------------------------------------------------------------------- the Flax checkpoint directory


@dataclasses.dataclass(frozen=True)
class Meta:
    arch: str
    config: dict
    lora: dict | None = None
    hf_config: dict | None = None
    source: str | None = None

    def to_json(self) -> dict:
        return {"format": FORMAT, **dataclasses.asdict(self)}


def build(meta: Meta, *, seed: int = 0) -> nnx.Module:
    """A freshly initialised model of the architecture and configs in `meta`."""
    from jaxbgs import models

    fam = models.family(meta.arch)
    return fam.Model(
        fam.Config.from_json(meta.config), lora=LoRAConfig.from_json(meta.lora), rngs=nnx.Rngs(seed)
    )


def save(
    model: nnx.Module, dst: str | Path, meta: Meta, *, passthrough: dict | None = None, replace: bool = False
) -> Path:
    """Write `model` and `meta` as a Flax checkpoint directory, atomically (over an old one: `replace`)."""
    import orbax.checkpoint as ocp

    dst = Path(dst).absolute()
    state = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    with atomic_path(dst, directory=True, replace=replace) as tmp:
        (tmp / CONFIG_FILE).write_text(json.dumps(meta.to_json(), indent=2) + "\n")
        with ocp.StandardCheckpointer() as ckpt:
            ckpt.save(tmp / "params", state)
        if passthrough:
            from safetensors.numpy import save_file

            save_file({k: np.asarray(v, order="C") for k, v in passthrough.items()}, str(tmp / PASSTHROUGH))
    return dst


def _read_meta(src: Path) -> tuple[Meta, int]:
    cfg_file = src / CONFIG_FILE
    if not cfg_file.is_file():
        raise InputError(
            f"not a jaxbgs Flax checkpoint (no {CONFIG_FILE})",
            file=src,
            fix="convert it first with: python -m checkpoints_convert to-flax",
        )
    try:
        d = json.loads(cfg_file.read_text())
        fmt = d.pop("format", None)
    except (ValueError, AttributeError) as e:
        raise InputError(f"unreadable ({e})", file=cfg_file, fix="convert the checkpoint again") from None
    if fmt not in READABLE:
        raise InputError(
            f"unsupported checkpoint format {fmt!r} (this version reads {list(READABLE)})",
            file=cfg_file, fix="convert the checkpoint again with this version",
        )  # fmt: skip
    fields = {f.name for f in dataclasses.fields(Meta)}
    if set(d) - fields or "arch" not in d or "config" not in d:
        raise InputError(
            f"unexpected keys {sorted(set(d) - fields)} or missing arch/config", file=cfg_file,
            fix="convert the checkpoint again with this version",
        )  # fmt: skip
    return Meta(**d), fmt


def read_meta(src: str | Path) -> Meta:
    return _read_meta(Path(src))[0]


def _restore_per_layer(ckpt, src: Path, model: nnx.Module) -> None:
    """A FORMAT 1 `params/` (one entry per layer, the names `flat_params` gives) into `model`,
    strictly: every parameter present, nothing else, the same shapes."""
    restored = ckpt.restore(src / "params")
    flat = {
        _dotted(p.key for p in k): np.asarray(v) for k, v in jax.tree_util.tree_leaves_with_path(restored)
    }
    expected = param_shapes(model)
    problems = [f"missing {_listing(set(expected) - set(flat))}"] if set(expected) - set(flat) else []
    if unknown := set(flat) - set(expected):
        problems.append(f"unexpected {_listing(unknown)}")
    if bad := [k for k in set(flat) & set(expected) if flat[k].shape != expected[k]]:
        problems.append(f"shape mismatch at {_listing(bad)}")
    if problems:
        raise InputError(
            "FORMAT 1 parameters do not match the config: " + "; ".join(problems),
            file=src / "params",
            fix="convert the checkpoint again from its PyTorch source with this version",
        )
    assign(model, flat)


def load(src: str | Path) -> tuple[nnx.Module, Meta]:
    """Rebuild the Flax model from a checkpoint directory written by `save` (FORMAT 2), or by an
    earlier version (FORMAT 1: its per-layer parameters are stacked on the way in)."""
    import orbax.checkpoint as ocp

    src = Path(src).absolute()
    meta, fmt = _read_meta(src)
    model = build(meta)
    state = nnx.state(model, nnx.Param)
    with ocp.StandardCheckpointer() as ckpt:
        try:
            if fmt == 1:
                _restore_per_layer(ckpt, src, model)
                return model, meta
            restored = ckpt.restore(src / "params", nnx.to_pure_dict(state))
        except InputError:
            raise
        except Exception as e:
            raise InputError(
                f"cannot restore parameters ({type(e).__name__}: {str(e)[:300]})",
                file=src / "params",
                fix="the directory is incomplete or was written for another config; convert again",
            ) from e
    nnx.replace_by_pure_dict(state, restored)
    nnx.update(model, state)
    return model, meta


def read_passthrough(src: str | Path) -> dict[str, np.ndarray]:
    path = Path(src) / PASSTHROUGH
    if not path.is_file():
        return {}
    from safetensors.numpy import load_file

    return load_file(str(path))

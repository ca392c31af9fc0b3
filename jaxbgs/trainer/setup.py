"""What a run needs before its first step: the judgments split into train / validation / test, the
clips as one uint8 array indexed by video id, and the model with its adapters.

Real experiments read `--data`, `--videos` and `--weights`; when any is missing the run stops here,
before any work, naming what to provide and where to get it.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
from flax import nnx

from experiments import Experiment
from jaxbgs.data.judgments import Trials
from jaxbgs.data.matrices import PairMatrix, pair_matrix
from jaxbgs.data.splits import validation_split
from jaxbgs.errors import InputError
from jaxbgs.lora import LoRAConfig

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
NORMALISATION = {
    "vjepa2": IMAGENET,
    "vjepa21": IMAGENET,
    "videomae": IMAGENET,
    "timesformer": ((0.45, 0.45, 0.45), (0.225, 0.225, 0.225)),
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
}
WHERE = {
    "data": "the released judgments: garciakathy/similarity-judgments-finetuning (data/interim/similarity, "
    "data/raw/utils), or ../shared/data/bgs_human",
    "videos": "the 250 Moments-in-Time clips named in the mapping (http://moments.csail.mit.edu/)",
    "weights": "a Hugging Face directory or cache id (huggingface-cli download <id>) or the release .pt "
    "(V-JEPA 2.1: https://dl.fbaipublicfiles.com/vjepa2/<file>)",
}


@dataclasses.dataclass(frozen=True)
class RunData:
    """Everything indexed by video id: `clips[id]` is that video's (T, S, S, 3) uint8 clip."""

    clips: np.ndarray
    train_ids: np.ndarray
    val_ids: np.ndarray
    test_ids: np.ndarray
    train: Trials
    val: Trials
    test: Trials
    train_matrix: PairMatrix  # human distances for the RSA term (train split only)
    captions: dict[int, list[str]] | None = None
    # per-video ratings (names, (n_videos, k) indexed by video id) for the probes; the demo's latents
    ratings: tuple[tuple[str, ...], np.ndarray] | None = None
    # the validation split's cost in training judgments (trials crossing it are left out), for the log
    excluded: str = ""

    @property
    def val_matrix(self) -> PairMatrix:
        return pair_matrix(self.val, self.val_ids)

    @property
    def test_matrix(self) -> PairMatrix:
        return pair_matrix(self.test, self.test_ids)


def check_inputs(exp: Experiment) -> None:
    missing = [k for k in ("data", "videos", "weights") if getattr(exp, k) is None]
    if missing:
        lines = "; ".join(f"--{k}: {WHERE[k]}" for k in missing)
        raise InputError(
            f"experiment {exp.name!r} needs {', '.join('--' + k for k in missing)}",
            fix=f"provide {lines}. Nothing was run",
        )
    problems = [
        f"--{key}: {getattr(exp, key)} is not a directory ({WHERE[key]})"
        for key in ("data", "videos")
        if not Path(getattr(exp, key)).is_dir()
    ]
    if not Path(exp.weights).expanduser().exists():
        if re.fullmatch(r"[\w.-]+/[\w.-]+", exp.weights):  # a Hub id: it must be in the local cache
            from jaxbgs.eval.language import resolve_model_dir

            try:
                resolve_model_dir(exp.weights)
            except InputError as e:
                problems.append(f"--weights: {e}")
        else:
            problems.append(f"--weights: no such checkpoint {exp.weights} ({WHERE['weights']})")
    if problems:  # every one at once: a run that needs a GPU should not be restarted once per typo
        raise InputError(
            f"{len(problems)} missing input(s): " + "; ".join(problems), fix="provide each of them"
        )


def split_data(
    exp: Experiment, clips, train_ids, test_ids, train: Trials, test: Trials, captions=None
) -> RunData:
    tr, val = validation_split(train, train_ids, fraction=exp.val_fraction, by=exp.val_split, seed=exp.seed)
    return RunData(
        clips=clips,
        train_ids=tr.ids,
        val_ids=val.ids,
        test_ids=np.asarray(test_ids),
        train=tr.trials,
        val=val.trials,
        test=test,
        train_matrix=pair_matrix(tr.trials, tr.ids),
        captions=captions,
        excluded=f"{tr.n_excluded_crossing} of {len(train)} training trials mix training and validation "
        "videos and are left out of both (the price of a stimulus-disjoint split; val_split=judgment keeps "
        "them)"
        if tr.n_excluded_crossing
        else "",
    )


def load_real_data(exp: Experiment) -> RunData:
    from jaxbgs.data import video
    from jaxbgs.data.dataset import load_human_data

    check_inputs(exp)
    human = load_human_data(exp.data)
    spec = video.ClipSpec(frames=exp.frames, size=exp.size, mode=exp.clip_mode)
    paths = video.video_paths(exp.videos, human.video_names)
    cached = video.open_cache(video.build_cache(paths, spec, exp.cache))
    clips = np.asarray(cached.array)  # rows follow cached.ids; index by id below
    order = np.argsort(cached.ids)
    by_id = np.zeros((max(cached.ids) + 1, *clips.shape[1:]), np.uint8)
    by_id[np.asarray(cached.ids)[order]] = clips[order]
    return split_data(exp, by_id, human.train_ids, human.test_ids, human.train, human.test, human.captions)


def lora_config(exp: Experiment) -> LoRAConfig:
    return LoRAConfig(
        rank=exp.lora_rank, alpha=exp.lora_alpha, dropout=exp.lora_dropout, targets=exp.lora_targets
    )


def runtime_overrides(exp: Experiment) -> dict:
    out = {
        "dtype": exp.dtype,
        "remat": exp.remat,
        "attention": exp.attention,
        "head_dim": exp.head_dim,
        "head_norm": exp.head_norm,
        "head_dropout": exp.head_dropout,
    }
    if exp.pool is not None:
        out["pool"] = exp.pool
    if exp.frame_grouping is not None:
        out["frame_grouping"] = exp.frame_grouping
    return out


def build_model(exp: Experiment, weights: str | Path | None = None, *, seed: int | None = None):
    """The backbone with adapters: from a jaxbgs Flax checkpoint directory or a PyTorch checkpoint."""
    from checkpoints_convert import convert, core

    weights = weights or exp.weights
    seed = exp.seed if seed is None else seed
    lora = lora_config(exp)
    if (Path(str(weights)) / core.CONFIG_FILE).is_file():
        base, meta = core.load(weights)
        if meta.arch != exp.arch:
            raise InputError(
                f"the checkpoint holds a {meta.arch} model; the experiment trains {exp.arch}",
                file=Path(str(weights)) / core.CONFIG_FILE,
                fix=f"pass a {exp.arch} checkpoint as --weights, or --set arch={meta.arch}",
            )
        fam_cfg = type(base.cfg).from_json(meta.config).replace(**runtime_overrides(exp))
        model = type(base)(fam_cfg, lora=lora, rngs=nnx.Rngs(seed))
        core.assign(model, {k: v for k, v in core.flat_params(base).items() if k in core.base_shapes(model)})
        meta = dataclasses.replace(meta, config=fam_cfg.to_json(), lora=lora.to_json())
        return model, meta
    model, meta, _ = convert.from_torch(exp.arch, weights, lora=lora, seed=seed, **runtime_overrides(exp))
    return model, meta

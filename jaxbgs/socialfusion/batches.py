"""SocialFusion's inputs for a run: every task's samples read from its native layout (or the
demo's generated data) into cached encoder-feature pools, the prompts, and the epochs' batches.

Joint training draws every task down to the smallest task's size afresh each epoch (paper §3.2);
the epoch's batches are a pure function of (seed, epoch), so a resume replays them exactly.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from experiments.socialfusion import SocialFusionExperiment
from jaxbgs.errors import InputError
from jaxbgs.models import llama
from jaxbgs.socialfusion import features, gaze, prompts
from jaxbgs.socialfusion.data.readers import EVAL_SPLIT, read

# DEMO_DIRS: the sub-directory names of real layouts too
from jaxbgs.socialfusion.data.synthetic import DEMO_DIRS, VERSION, write_demo_datasets

WHERE = {
    "data": "a directory holding the datasets in their native layouts: hagrid/ (HaGRIDv2), pisc/ (PISC), "
    "ego4d_lam/ (Ego4D Looking-At-Me), gazefollow/ (GazeFollow), affectnet/ (AffectNet)",
    "weights": f"Llama 3.2 1B with its tokenizer (gated: huggingface-cli download {llama.HF_ID} "
    "--local-dir DIR)",
}


@dataclasses.dataclass(frozen=True, eq=False)
class RunData:
    """Pools per task (train and eval split), each task's prompt tokens and answer token ids."""

    tasks: tuple[str, ...]
    train: dict[str, features.Pool]
    eval: dict[str, features.Pool]
    tokens: np.ndarray  # (tasks, L) left-padded prompts, row = position in `tasks`
    token_mask: np.ndarray
    answer_ids: dict[str, np.ndarray]  # task -> (options,) first token of each answer
    option_of_class: dict[str, np.ndarray]  # task -> (classes,) option index, -1 if not an option
    dropped: dict[str, dict[str, int]]  # task -> reason -> count (readers' protocol and ours)


def data_dir(exp: SocialFusionExperiment, task: str) -> Path:
    for entry in exp.data_dirs:
        t, _, path = entry.partition(":")
        if t == task:
            return Path(path).expanduser()
    if exp.data is None:
        raise InputError(
            f"experiment {exp.name!r} needs --data", fix=f"provide {WHERE['data']}. Nothing was run"
        )
    return Path(exp.data).expanduser() / DEMO_DIRS[task]


def demo_root(exp: SocialFusionExperiment) -> Path:
    """The demo's generated datasets (written once per seed into the cache)."""
    root = Path(exp.cache) / f"socialfusion-demo-data-v{VERSION}-seed{exp.seed}-n{exp.demo_per_class}"
    if not (root / ".complete").is_file():
        write_demo_datasets(root, seed=exp.seed, image_size=96, per_class=exp.demo_per_class)
        (root / ".complete").write_text("ok\n")
    return root


def check_inputs(exp: SocialFusionExperiment) -> None:
    """Stop before any work when an input is missing, naming every one of them."""
    if exp.demo:
        return
    missing = []
    if exp.data is None and not all(any(e.startswith(t + ":") for e in exp.data_dirs) for t in exp.tasks):
        missing.append(f"--data: {WHERE['data']}")
    if exp.weights is None:
        missing.append(f"--weights: {WHERE['weights']}")
    if exp.encoder_weights is None:
        missing.append(f"--set encoder_weights=DIR: {features.DEFAULT_WEIGHTS[exp.encoder]}")
    if missing:
        raise InputError(
            f"experiment {exp.name!r} needs inputs", fix="provide " + "; ".join(missing) + ". Nothing was run"
        )
    dirs = {data_dir(exp, t): t for t in exp.tasks}  # the two PISC tasks share one directory
    problems = [f"--data: no {t} dataset directory {d}" for d, t in dirs.items() if not d.is_dir()]
    for flag, value in (("--weights", exp.weights), ("--set encoder_weights", exp.encoder_weights)):
        if (why := _absent(value)) is not None:
            problems.append(f"{flag}: {why}")
    if problems:
        raise InputError(
            f"{len(problems)} missing input(s): " + "; ".join(problems),
            fix=f"provide each of them ({WHERE['data']} for the datasets). Nothing was run",
        )


def _absent(value: str) -> str | None:
    """Why a path or Hub id cannot be found here, or None when it can (its contents are read later)."""
    if Path(value).expanduser().exists():
        return None
    from jaxbgs.eval.language import resolve_model_dir

    try:
        resolve_model_dir(value)
    except InputError as e:
        return str(e)
    return None


def load_tokenizer(exp: SocialFusionExperiment):
    if exp.demo:
        return prompts.demo_tokenizer()
    return llama.load_tokenizer(llm_dir(exp))


def llm_dir(exp: SocialFusionExperiment) -> Path:
    """`--weights` as given, or the HF cache's copy of a Hub id."""
    path = Path(exp.weights).expanduser()
    if path.exists():
        return path
    from jaxbgs.eval.language import resolve_model_dir

    return resolve_model_dir(exp.weights)


def load_data(exp: SocialFusionExperiment, encoder: features.Encoder, tokenizer) -> RunData:
    root = demo_root(exp) if exp.demo else None
    train, evals, dropped = {}, {}, {}
    for task in exp.tasks:
        where = root / DEMO_DIRS[task] if root is not None else data_dir(exp, task)
        pools = []
        for split in ("train", EVAL_SPLIT[task]):
            samples = read(task, where, split, limit=exp.limit)
            keep = [s for s in samples if task == "gaze" or prompts.option_index(task)[s.label] >= 0]
            drops = dict(samples.dropped)
            if len(keep) < len(samples):  # HaGRID no_gesture hands are not an option of the prompt
                drops["class is not an answer option"] = len(samples) - len(keep)
            dropped[f"{task}/{split}"] = drops
            pools.append(
                features.build_pool(
                    task, keep, encoder, size=exp.image_size, mode=exp.image_mode, cache=exp.cache
                )
            )
        train[task], evals[task] = pools
    tokens, mask = prompts.encode_prompts(tokenizer, exp.tasks)
    answer = {t: prompts.answer_token_ids(tokenizer, t) for t in exp.tasks if t != "gaze"}
    options = {t: prompts.option_index(t) for t in exp.tasks if t != "gaze"}
    return RunData(exp.tasks, train, evals, tokens, mask, answer, options, dropped)


def epoch_plan(exp: SocialFusionExperiment, data: RunData, epoch: int) -> list[np.ndarray]:
    """The epoch's batches as (B, 2) rows of (task position, row in that task's train pool); -1 pads
    a short batch. Joint runs draw each task down to the smallest (paper §3.2) afresh each epoch;
    `batch_by_task` keeps each batch to one task (an ablation: in the demo it left gesture near chance)."""
    rng = np.random.default_rng([exp.seed, epoch, 17])
    sizes = [len(data.train[t]) for t in data.tasks]
    n = min(sizes) if exp.undersample and len(sizes) > 1 else None
    rows = []
    for k, size in enumerate(sizes):
        pick = rng.permutation(size)[:n] if n is not None else rng.permutation(size)
        rows.append(np.stack([np.full(len(pick), k), pick], axis=1))
    b = exp.batch_size

    def chunks(r: np.ndarray) -> list[np.ndarray]:
        r = np.concatenate([r, np.full((-len(r) % b, 2), -1)])
        return [r[i : i + b] for i in range(0, len(r), b)]

    if exp.batch_by_task:
        batches = [c for r in rows for c in chunks(r)]
        return [batches[i] for i in rng.permutation(len(batches))]
    rows = np.concatenate(rows)
    return chunks(rows[rng.permutation(len(rows))])


def _bucket(n: int, quantum: int = 64) -> int:
    return -(-n // quantum) * quantum


def make_batch(data: RunData, rows: np.ndarray, pools: dict[str, features.Pool]) -> dict:
    """Host arrays of one batch; padded rows (-1) take the first row of the first task, weight 0."""
    valid = rows[:, 0] >= 0
    task_pos = np.where(valid, rows[:, 0], 0)
    idx = np.where(valid, rows[:, 1], 0)
    first = pools[data.tasks[0]]
    b = len(rows)
    out = {
        "features": np.zeros((b, *first.features.shape[1:]), np.float16),
        "boxes": np.zeros((b, features.MAX_BOXES, 4), np.float32),
        "box_valid": np.zeros((b, features.MAX_BOXES), bool),
        "answer": np.zeros(b, np.int32),
        "is_cls": np.zeros(b, np.float32),
        "is_gaze": np.zeros(b, np.float32),
        "heat": np.zeros((b, gaze.SIZE, gaze.SIZE), np.float32),
    }
    for k, task in enumerate(data.tasks):
        sel = np.flatnonzero(task_pos == k)
        if not len(sel):
            continue
        pool, r = pools[task], idx[sel]
        out["features"][sel] = pool.features[np.sort(r)][np.argsort(np.argsort(r))]  # sorted reads: mmap
        out["boxes"][sel], out["box_valid"][sel] = pool.boxes[r], pool.box_valid[r]
        if task == "gaze":
            out["is_gaze"][sel] = valid[sel]
            first_point = np.where(pool.point_mask[r, :1, None], pool.points[r, :1], -1.0)[:, 0]
            out["heat"][sel] = gaze.target_heatmap(first_point)
        else:
            out["is_cls"][sel] = valid[sel]
            out["answer"][sel] = data.answer_ids[task][data.option_of_class[task][pool.labels[r]]]
    # The prompts go in once each (rows point at theirs: the LLM runs each prompt once, not per row):
    # the one task's prompt, or all of them when rows mix tasks, so a run compiles a few shapes. Left
    # padding: drop the pad columns no row needs (lengths bucketed to multiples of 64).
    present = np.unique(task_pos)
    table = present if len(present) == 1 else np.arange(len(data.tasks))
    need = int(data.token_mask[present].sum(axis=1).max())
    keep = min(data.tokens.shape[1], _bucket(need))
    out["tokens"] = data.tokens[table, -keep:]
    out["token_mask"] = data.token_mask[table, -keep:]
    out["prompt"] = np.searchsorted(table, task_pos).astype(np.int32)
    return out

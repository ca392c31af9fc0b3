"""`python -m jaxbgs.analysis {ceiling,language,rsa,design,example}`: score models against people.

Stable interface: scripts and docs rely on the subcommands, flags and JSON keys. `--json` prints one
JSON object on stdout; errors print one line on stderr and exit 2 (`--debug` shows the traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from jaxbgs.errors import InputError, count, count_or_zero


def _data(args):
    from jaxbgs.data.dataset import load_human_data
    from jaxbgs.data.matrices import pair_matrix

    data = load_human_data(args.data)
    ids, trials = data.split(args.split)
    return data, ids, trials, pair_matrix(trials, ids)


def cmd_ceiling(args) -> dict:
    from jaxbgs.eval.ceiling import split_half_ceiling

    _, ids, trials, matrix = _data(args)
    c = split_half_ceiling(matrix, iters=args.iters, seed=args.seed)
    return {
        "split": args.split,
        "split_half_r2": c.split_half_r2,
        "split_half_r": c.split_half_r,
        "mean_half_r": c.mean_half_r,
        "n_pairs_observed": matrix.n_pairs_observed,
        "n_pairs_used": c.n_pairs_used,
        "n_trials": len(trials),
        "n_videos": len(ids),
        "iters": c.iters,
        "seed": c.seed,
    }


def _score(args, similarity: np.ndarray, matrix, trials) -> dict:
    from jaxbgs.eval.ooo import ooo_accuracy
    from jaxbgs.eval.rsa import rsa

    r = rsa(similarity, matrix, n_boot=args.n_boot, n_perm=args.n_perm, seed=args.seed)
    o = ooo_accuracy(similarity, matrix.ids, trials)
    return {
        "r2": r.r2,
        "r2_ci": r.r2_ci,
        "rho": r.rho,
        "p_permutation": r.p_permutation,
        "ooo_accuracy": o.three_way,
        "ooo_accuracy_reference": o.anchor,
        f"n_{args.split}_triplets": o.n_trials,
        "n_pairs_observed": r.n_pairs,
        "n_boot": args.n_boot,
        "n_perm": args.n_perm,
        "seed": args.seed,
    }


def _projection(args, dim: int, matrix) -> str:
    """What --project did: the JL target depends on the number of videos, and features already that
    small are left as they are (the paper's 384-d caption embeddings, for instance)."""
    from jaxbgs.eval.rsa import jl_min_dim, projection_target

    if not args.project:
        return "off"
    k = projection_target(dim, len(matrix.ids))
    if k is None:
        return f"none: {dim} dims <= the JL target {jl_min_dim(len(matrix.ids))} for {len(matrix.ids)} videos"
    return f"{dim} -> {k} dims (sparse random, JL eps 0.1)"


def cmd_language(args) -> dict:
    from jaxbgs.eval.language import BACKENDS, caption_embeddings
    from jaxbgs.eval.rsa import aligned_similarity

    data, ids, trials, matrix = _data(args)
    encoder = BACKENDS[args.backend](args.model)
    emb = caption_embeddings(encoder, data.captions, ids, args.captions)
    sim = aligned_similarity(emb, ids, matrix, metric="cosine", project=args.project, seed=args.seed)
    return {
        "model": args.model,
        "model_dir": str(encoder.path),
        "captions": args.captions,
        "split": args.split,
        "backend": args.backend,
        "dim": int(emb.shape[1]),
        "projection": _projection(args, int(emb.shape[1]), matrix),
    } | _score(args, sim, matrix, trials)


def _load_ids(path: Path, names: dict[str, int]) -> np.ndarray:
    from jaxbgs.data.tables import int_column, read_table

    if not path.is_file():
        raise InputError("ids file not found", file=path, fix="one video id per embedding row")
    if path.suffix == ".npy":
        try:
            ids = np.load(path)
        except (OSError, ValueError) as e:
            raise InputError(
                f"not a readable .npy file ({e})", file=path, fix="save it with np.save"
            ) from None
        if ids.dtype.kind not in "iu":
            raise InputError(
                f"ids must be integers, got {ids.dtype}", file=path, fix="save integer video ids"
            )
        return ids.astype(np.int64).reshape(-1)
    lines = path.read_text().splitlines()
    if lines and lines[0].strip().lstrip("-").isdigit():  # plain list, no header
        ids = []
        for i, line in enumerate(lines):
            for token in line.split():
                if not token.lstrip("-").isdigit():
                    raise InputError(
                        f"{token!r} is not a video id",
                        file=path,
                        where=f"line {i + 1}",
                        fix="whole numbers only",
                    )
                ids.append(int(token))
        return np.array(ids, dtype=np.int64)
    t = read_table(path)
    for col in ("id", "index"):
        if col in t.columns:
            return int_column(t, col)
    if "video_name" in t.columns:
        unknown = [n for n in t.columns["video_name"] if n not in names]
        if unknown:
            raise InputError(
                f"video {unknown[0]!r} is not in the mapping file",
                file=path,
                fix="use video names of video_mapping.csv",
            )
        return np.array([names[n] for n in t.columns["video_name"]], dtype=np.int64)
    raise InputError(
        "no id column", file=path, fix="give one integer id per line, or a CSV column id or video_name"
    )


def _load_embeddings(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise InputError(
            "embeddings file not found", file=path, fix="save a (n_videos, dim) array with np.save"
        )
    try:
        loaded = np.load(path, allow_pickle=False)
        layers = {k: loaded[k] for k in loaded.files} if path.suffix == ".npz" else {"embedding": loaded}
    except Exception as e:  # numpy raises ValueError/OSError/EOFError/BadZipFile for damaged files
        raise InputError(
            f"cannot read the embeddings ({type(e).__name__}: {e})",
            file=path,
            fix="write it again with np.save (.npy) or np.savez (.npz, one array per layer)",
        ) from e
    for name, x in layers.items():
        if x.ndim < 2 or not np.issubdtype(x.dtype, np.number):
            raise InputError(
                f"array {name!r} has shape {x.shape} and dtype {x.dtype}",
                file=path,
                fix="embeddings must be numeric with one row per video: (n_videos, ...)",
            )
        if not np.isfinite(x).all():
            bad = int(np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(1))[0])
            raise InputError(
                f"array {name!r} row {bad} holds NaN or Inf",
                file=path,
                fix="recompute the embedding of that video",
            )
    return layers


def cmd_rsa(args) -> dict:
    from jaxbgs.data.matrices import pair_matrix
    from jaxbgs.eval.layers import select_layer
    from jaxbgs.eval.rsa import aligned_similarity, rsa

    data, ids, trials, matrix = _data(args)
    layers = _load_embeddings(Path(args.embeddings))
    emb_ids = _load_ids(Path(args.ids), data.name_to_id)
    for name, x in layers.items():
        if len(x) != len(emb_ids):
            raise InputError(
                f"array {name!r} has {len(x)} rows but the ids file lists {len(emb_ids)}",
                file=args.embeddings,
                fix="give one id per embedding row",
            )
    out = {
        "embeddings": str(args.embeddings),
        "metric": args.metric,
        "split": args.split,
    }
    chosen = next(iter(layers))
    if len(layers) > 1:
        train = pair_matrix(data.train, data.train_ids)
        if not np.isin(data.train_ids, emb_ids).all():
            raise InputError(
                "layer selection needs embeddings of the training videos too",
                file=args.ids,
                fix="embed all 250 videos, or pass a single-layer .npy",
            )
        choice = select_layer(layers, emb_ids, train, metric=args.metric, seed=args.seed)
        chosen = choice.best
        per_layer = {}
        for name in layers:
            sim = aligned_similarity(
                layers[name], emb_ids, matrix, metric=args.metric, project=args.project, seed=args.seed
            )
            per_layer[name] = {
                "cv_rho": float(choice.mean_rho[choice.names.index(name)]),
                f"{args.split}_r2": rsa(sim, matrix).r2,
            }
        out |= {"layer": chosen, "layers": per_layer}
    sim = aligned_similarity(
        layers[chosen], emb_ids, matrix, metric=args.metric, project=args.project, seed=args.seed
    )
    dim = int(np.prod(layers[chosen].shape[1:]))
    return out | {"projection": _projection(args, dim, matrix)} | _score(args, sim, matrix, trials)


def cmd_design(args) -> dict:
    from jaxbgs.data.design import greedy_triplet_design

    d = greedy_triplet_design(args.n_items, args.set_size, seed=args.seed)
    d.to_csv(args.out)
    cover = d.pair_coverage()
    n_pairs = args.n_items * (args.n_items - 1) // 2
    return {
        "out": str(args.out),
        "n_items": args.n_items,
        "set_size": args.set_size,
        "n_triplets": len(d.triplets),
        "n_cover": d.n_cover,
        "n_sets": int(d.set_index.max()) + 1,
        "n_pairs": n_pairs,
        "pairs_covered": int((cover[np.triu_indices(args.n_items, 1)] > 0).sum()),
        "min_possible": -(-n_pairs // 3),
        "seed": args.seed,
    }


def cmd_example(args) -> dict:
    from jaxbgs.data.dataset import load_human_data
    from jaxbgs.data.synthetic import simulate_release

    out = simulate_release(args.out, n_videos=args.n_videos, n_test=args.n_test, seed=args.seed)
    return {"out": str(out), "latents": str(out / "latents.npy")} | load_human_data(out).summary()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m jaxbgs.analysis", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, data=True):
        if data:
            sp.add_argument("--data", required=True, help="directory of the released judgments")
            sp.add_argument("--split", choices=("train", "test"), default="test")
        sp.add_argument("--seed", type=int, default=0)
        sp.add_argument("--json", action="store_true", help="print one JSON object")
        sp.add_argument("--debug", action="store_true", help="show tracebacks")

    def scoring(sp):
        sp.add_argument(
            "--n-boot",
            type=count_or_zero,
            default=10_000,
            help="bootstrap resamples of pairs for the R^2 CI (0: none)",
        )
        sp.add_argument(
            "--n-perm", type=count_or_zero, default=5_000, help="label permutations for the p-value (0: none)"
        )
        sp.add_argument("--project", action="store_true", help="sparse random projection (JL, eps=0.1) first")

    sp = sub.add_parser("ceiling", help="split-half noise ceiling (paper App. F.5)")
    common(sp)
    sp.add_argument("--iters", type=count, default=1000)
    sp.set_defaults(func=cmd_ceiling)

    sp = sub.add_parser("language", help="caption-embedding baseline from a sentence encoder")
    common(sp)
    scoring(sp)
    sp.add_argument(
        "--model", required=True, help="local HF directory, cached Hub id, or packaged model name"
    )
    sp.add_argument("--captions", choices=("first", "mean", "concat"), default="first")
    sp.add_argument(
        "--backend",
        choices=("torch", "flax"),
        default="torch",
        help="transformers on PyTorch (reference) or the Flax BERT port (same numbers)",
    )
    sp.set_defaults(func=cmd_language)

    sp = sub.add_parser("rsa", help="score precomputed embeddings (.npy, or .npz with one array per layer)")
    common(sp)
    scoring(sp)
    sp.add_argument("--embeddings", required=True)
    sp.add_argument(
        "--ids", required=True, help="video id per embedding row (.npy, text, or CSV id/video_name)"
    )
    sp.add_argument("--metric", choices=("cosine", "pearson"), default="cosine")
    sp.set_defaults(func=cmd_rsa)

    sp = sub.add_parser("example", help="write a simulated-observer dataset in the released format")
    common(sp, data=False)
    sp.add_argument("--out", required=True)
    sp.add_argument("--n-videos", type=count, default=60)
    sp.add_argument("--n-test", type=count, default=20)
    sp.set_defaults(func=cmd_example)

    sp = sub.add_parser("design", help="greedy set-cover triplet design (paper App. E)")
    common(sp, data=False)
    sp.add_argument("--n-items", type=count, required=True)
    sp.add_argument("--set-size", type=count, default=220)
    sp.add_argument("--out", required=True)
    sp.set_defaults(func=cmd_design)
    return p


def _print_human(result: dict) -> None:
    for k, v in result.items():
        if isinstance(v, float):
            v = f"{v:.4f}"
        elif isinstance(v, list) and v and isinstance(v[0], float):
            v = "[" + ", ".join(f"{x:.4f}" for x in v) + "]"
        elif isinstance(v, dict):
            v = json.dumps(v, default=float)
        print(f"{k:>24}: {v}")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        result = args.func(args)
    except (InputError, ValueError, OSError) as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
    else:
        _print_human(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

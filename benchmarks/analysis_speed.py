"""Speed of the vectorised RSA statistics against the scipy loop they replace (a benchmark, not a test).

Times 10,000 bootstrap resamples of Spearman R^2 and 5,000 label permutations on the real test split
(50 videos, 637 observed pairs): `jaxbgs.eval.stats` (`resample_indices` + `bootstrap_spearman`,
`permutation_spearman`) against a plain loop of `scipy.stats.spearmanr` over the very same resample
indices and permutations. Both sides must agree to 1e-10 (else exit 1), so the ratio compares equal
work. Every table in the paper needs these intervals and p-values per model, which is why the target
is the vectorised side being >= 30x faster than the scipy loop.

    python benchmarks/analysis_speed.py [--data ../shared/data/bgs_human] [--n-boot 10000] \
        [--n-perm 5000] [--repeats 3] [--model all-MiniLM-L6-v2] [--json]

The model side is a seeded random 384-d embedding per test video (the statistics cost the same for any
model), or the caption language baseline with `--model`. Runs alternate (jaxbgs, scipy, ...) after one
jaxbgs warm-up; the medians and the ratio scipy/jaxbgs are reported. Exit 2: data directory missing.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import scipy
import scipy.stats
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing jaxbgs
from jaxbgs.data.dataset import load_human_data
from jaxbgs.data.matrices import pair_matrix
from jaxbgs.errors import InputError
from jaxbgs.eval.rsa import aligned_similarity
from jaxbgs.eval.stats import bootstrap_spearman, permutation_spearman, resample_indices

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bgs_human"
TARGET = 30.0
TOLERANCE = 1e-10
EMBED_DIM = 384


def jaxbgs_side(h, m, sim, rows, cols, n_boot, n_perm, seed):
    """Bootstrap R^2 samples and permutation null rhos, vectorised; returns (r2, null, t_boot, t_perm)."""
    t0 = time.perf_counter()
    idx = resample_indices(len(h), n_boot, np.random.default_rng(seed))
    r2 = bootstrap_spearman(h, m, idx)[0] ** 2
    t1 = time.perf_counter()
    null = permutation_spearman(h, sim, rows, cols, n_perm=n_perm, seed=seed)[2]
    t2 = time.perf_counter()
    return r2, null, t1 - t0, t2 - t1


def scipy_side(h, m, sim, rows, cols, n_boot, n_perm, seed, desc):
    """The same statistics, one `scipy.stats.spearmanr` call per resample and per permutation."""
    spearmanr = scipy.stats.spearmanr
    with tqdm(
        total=n_boot + n_perm, desc=desc, unit="call", file=sys.stderr, mininterval=1.0, leave=False
    ) as bar:
        t0 = time.perf_counter()
        idx = resample_indices(len(h), n_boot, np.random.default_rng(seed))  # the very same draws
        r2 = np.empty(n_boot)
        for b in range(n_boot):
            r2[b] = spearmanr(h[idx[b]], m[idx[b]]).statistic ** 2
            if b % 100 == 99:
                bar.update(100)
        t1 = time.perf_counter()
        spearmanr(h, m)  # the observed rho, as permutation_spearman computes it
        perms = np.argsort(np.random.default_rng(seed).random((n_perm, sim.shape[0])), axis=1)
        null = np.empty(n_perm)
        for i, p in enumerate(perms):
            null[i] = spearmanr(h, sim[p[rows], p[cols]]).statistic
            if i % 100 == 99:
                bar.update(100)
        t2 = time.perf_counter()
    return r2, null, t1 - t0, t2 - t1


def model_similarity(data, human, model: str | None, seed: int) -> np.ndarray:
    if model is None:
        emb = np.random.default_rng(seed).normal(size=(len(data.test_ids), EMBED_DIM))
    else:
        from jaxbgs.eval.language import TorchSentenceEncoder, caption_embeddings

        emb = caption_embeddings(TorchSentenceEncoder(model), data.captions, data.test_ids)
    return aligned_similarity(emb, data.test_ids, human, metric="cosine")


def machine() -> dict:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help=f"BGS human data directory (default {DEFAULT_DATA})"
    )
    ap.add_argument("--n-boot", type=int, default=10_000)
    ap.add_argument("--n-perm", type=int, default=5_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--model",
        default=None,
        help="language model for caption embeddings (e.g. all-MiniLM-L6-v2); default: synthetic",
    )
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = ap.parse_args(argv)
    if args.repeats < 1 or args.n_boot < 1 or args.n_perm < 1:
        ap.error("--repeats, --n-boot and --n-perm must be positive")
    if not args.data.is_dir():
        print(
            f"error: data directory {args.data} not found; pass --data DIR with the released BGS judgments",
            file=sys.stderr,
        )
        return 2
    try:
        data = load_human_data(args.data)
        human = pair_matrix(data.test, data.test_ids)
        sim = model_similarity(data, human, args.model, args.seed)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rows, cols = human.observed_pairs()
    h = human.similarity[rows, cols]
    m = sim[rows, cols]
    work = (h, m, sim, rows, cols, args.n_boot, args.n_perm, args.seed)

    jaxbgs_side(*work)  # warm-up
    times = {"jaxbgs": [], "scipy": []}
    for r in range(args.repeats):
        jr2, jnull, jb, jp = jaxbgs_side(*work)
        times["jaxbgs"].append((jb, jp))
        sr2, snull, sb, sp = scipy_side(*work, desc=f"scipy loop {r + 1}/{args.repeats}")
        times["scipy"].append((sb, sp))
    diff_boot = float(np.max(np.abs(jr2 - sr2)))
    diff_perm = float(np.max(np.abs(jnull - snull)))
    agree = diff_boot < TOLERANCE and diff_perm < TOLERANCE

    med = {
        side: {
            "bootstrap": statistics.median(b for b, _ in ts),
            "permutation": statistics.median(p for _, p in ts),
            "total": statistics.median(b + p for b, p in ts),
        }
        for side, ts in times.items()
    }
    ratio = {k: med["scipy"][k] / med["jaxbgs"][k] for k in ("bootstrap", "permutation", "total")}
    result = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "data": str(args.data),
        "model": args.model or f"synthetic normal {EMBED_DIM}-d (seed {args.seed})",
        "n_videos": int(human.n),
        "n_pairs": int(len(rows)),
        "n_boot": args.n_boot,
        "n_perm": args.n_perm,
        "repeats": args.repeats,
        "median_seconds": med,
        "ratio": ratio,
        "target_ratio": TARGET,
        "meets_target": ratio["total"] >= TARGET,
        "max_abs_diff": {"bootstrap_r2": diff_boot, "permutation_null": diff_perm},
        "agree": agree,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        mc = result["machine"]
        print(f"analysis speed, {result['date']}")
        print(
            f"machine: {mc['platform']}, {mc['processor']}, {mc['cpu_count']} CPUs, python {mc['python']}, "
            f"numpy {mc['numpy']}, scipy {mc['scipy']}"
        )
        print(
            f"data: test split, {result['n_videos']} videos, {result['n_pairs']} observed pairs; "
            f"model: {result['model']}"
        )
        print(f"{args.n_boot} bootstrap + {args.n_perm} permutation resamples, median of {args.repeats}\n")
        print(f"{'':<12} {'jaxbgs (s)':>11} {'scipy loop (s)':>15} {'ratio':>9}")
        for k in ("bootstrap", "permutation", "total"):
            print(f"{k:<12} {med['jaxbgs'][k]:>11.3f} {med['scipy'][k]:>15.3f} {ratio[k]:>8.1f}x")
        verdict = "meets" if result["meets_target"] else "MISSES"
        print(f"\ntotal {ratio['total']:.1f}x: {verdict} the >= {TARGET:.0f}x target")
        print(
            f"agreement: max |diff| bootstrap R^2 {diff_boot:.2e}, permutation null rho {diff_perm:.2e} "
            f"({'OK' if agree else 'FAIL'}, tolerance {TOLERANCE:.0e})"
        )
    if not agree:
        print("error: jaxbgs and the scipy loop disagree", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · The human judgments: trials, coverage, votes per pair, noise ceiling
#
# The released BGS data (250 Moments-in-Time videos, 200 train / 50 test, odd-one-out trials; paper
# §3.1, App. E and F.5), read with `jaxbgs.data` and scored with `jaxbgs.eval.ceiling`.
#
# Inputs (environment variables, relative paths start at the repository root):
# `JAXBGS_DATA` the released data (default `../shared/data/bgs_human`), `JAXBGS_FIGURES` where the
# PNG figures go (default `notebooks/figures`).

# %%
import os

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from jaxbgs.analysis.runs import notebook_inputs
from jaxbgs.data.dataset import load_human_data
from jaxbgs.data.matrices import pair_matrix
from jaxbgs.eval.ceiling import split_half_ceiling

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))  # headless unless a notebook front end set one
DATA, _, FIGURES = notebook_inputs()
PAPER_CEILING = 0.213  # paper App. F.5, test split
ITERS = 1000  # split-half iterations, as the paper

# %% [markdown]
# ## Trials
# `summary()` counts videos, trials per split and, from `all_triplets.csv`, the raw trials (some show
# a video twice: no split uses them) and the participants.

# %%
human = load_human_data(DATA)
for key, value in human.summary().items():
    print(f"{key:>32}: {value}")

# %% [markdown]
# ## Pair coverage
# Each trial shows three pairs. `pair_matrix` counts how often each pair appeared together and was
# kept together; unobserved pairs are masked everywhere downstream. The authors' test matrix
# (`sim_judg_test_rsm.csv`) is built from every raw trial inside the test videos, repeats included
# (670 pairs); the clean `test_triplets.csv` observes 637 (the paper's figure).

# %%
train = pair_matrix(human.train, human.train_ids)
test = pair_matrix(human.test, human.test_ids)
raw = human.all_trials
test_raw = pair_matrix(raw.select(raw.within(human.test_ids)), human.test_ids)
every = pair_matrix(raw, np.arange(len(human.video_names)))
for name, m in [("train", train), ("test", test), ("test, all raw trials", test_raw), ("all 250", every)]:
    total = m.n * (m.n - 1) // 2
    votes = m.counts[m.observed_pairs()]
    print(
        f"{name:>22}: {m.n_pairs_observed:>6} of {total:>6} pairs observed "
        f"({m.n_pairs_observed / total:6.1%}), votes per observed pair median {np.median(votes):.0f}, "
        f"max {votes.max()}"
    )

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
for ax, (name, m) in zip(axes, [("train", train), ("test", test)], strict=True):
    votes = m.counts[m.observed_pairs()]
    ax.hist(votes, bins=np.arange(1, votes.max() + 2) - 0.5, color="tab:blue")
    ax.set(
        title=f"{name}: {m.n_pairs_observed} observed pairs", xlabel="votes (trials) per pair", ylabel="pairs"
    )
fig.tight_layout()
fig.savefig(FIGURES / "01_votes_per_pair.png", dpi=120)

# %% [markdown]
# Coverage of all 250 videos by the raw trials (train videos first, then test; log colour scale):
# the train and test blocks, and the many trials that mix the two sets (excluded from both splits).
# Right: the test split's observed pairs from `test_triplets.csv`.

# %%
order = np.concatenate([human.train_ids, human.test_ids])
fig, axes = plt.subplots(1, 2, figsize=(11, 5))
im = axes[0].imshow(np.log1p(every.counts[np.ix_(order, order)]), cmap="viridis", interpolation="nearest")
axes[0].axhline(len(human.train_ids) - 0.5, color="w", lw=0.8)
axes[0].axvline(len(human.train_ids) - 0.5, color="w", lw=0.8)
axes[0].set(title="all raw trials: log(1 + co-occurrences)", xlabel="video (train | test)", ylabel="video")
fig.colorbar(im, ax=axes[0], shrink=0.8)
im = axes[1].imshow(test.counts, cmap="magma", interpolation="nearest")
axes[1].set(title=f"test split: votes per pair ({test.n_pairs_observed} observed)", xlabel="test video")
fig.colorbar(im, ax=axes[1], shrink=0.8)
fig.tight_layout()
fig.savefig(FIGURES / "01_coverage.png", dpi=120)

# %% [markdown]
# ## Split-half noise ceiling (App. F.5)
# Paper: 0.213 on the test split; anything in [0.19, 0.23] is consistent with it.

# %%
ceilings = {
    "test": split_half_ceiling(test, iters=ITERS),
    "test, all raw trials": split_half_ceiling(test_raw, iters=ITERS),
    "train": split_half_ceiling(train, iters=ITERS),
}
for name, c in ceilings.items():
    print(
        f"{name:>22}: split-half R^2 {c.split_half_r2:.3f} (Spearman-Brown r {c.split_half_r:.3f}, "
        f"mean half r {c.mean_half_r:.3f}, {c.n_pairs_used} pairs with >= 2 votes)"
    )

# %% [markdown]
# The spread of single split-half draws behind the estimate (each Spearman-Brown corrected).

# %%
single = ceilings["test"].corrected
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
axes[0].hist(single, bins=40, color="tab:gray")
axes[0].axvline(ceilings["test"].split_half_r, color="k", label="mean over iterations (corrected)")
axes[0].set(
    title="test split: single split-half draws",
    xlabel="Spearman-Brown corrected split-half r",
    ylabel="draws",
)
axes[0].legend(fontsize=8)
names = list(ceilings)
axes[1].bar(names, [ceilings[n].split_half_r2 for n in names], color=["tab:blue", "tab:cyan", "tab:green"])
axes[1].axhline(PAPER_CEILING, ls="--", color="k", label=f"paper, test ({PAPER_CEILING})")
axes[1].set(title="noise ceiling", ylabel="split-half $R^2$")
axes[1].legend(fontsize=8)
fig.tight_layout()
fig.savefig(FIGURES / "01_ceiling.png", dpi=120)

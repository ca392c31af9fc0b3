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
# # 06 · Which triplets fine-tuning flips (App. N.1-N.2, Figs. 10-11)
#
# The run's pretrained and fine-tuned test embeddings (`embeddings.npz`) scored on its test trials
# with the three-way odd-one-out rule, repeated showings of one triplet pooled into a majority vote
# (`jaxbgs.analysis.agreement`): which triplets fine-tuning fixes (wrong → right), which it breaks
# (right → wrong), with each video's caption.
#
# Inputs: `JAXBGS_RUN` (default `runs/demo`), `JAXBGS_FIGURES` (default `notebooks/figures`);
# relative paths start at the repository root.

# %%
import os
import textwrap

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from jaxbgs.analysis.agreement import CATEGORIES, agreement
from jaxbgs.analysis.runs import load_run, notebook_inputs
from jaxbgs.eval.ooo import ooo_accuracy
from jaxbgs.eval.rsa import similarity_matrix

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))  # headless unless a notebook front end set one
_, (RUN,), FIGURES = notebook_inputs()
TOP = 3

# %%
run = load_run(RUN)
emb, ids, trials, captions = run.embeddings, run.ids, run.test, run.captions
pretrained, finetuned = similarity_matrix(emb["pretrained"]), similarity_matrix(emb["finetuned"])
flips = agreement(trials, ids, pretrained, finetuned, captions=captions)
for key, value in flips.counts().items():
    print(f"{key:>20}: {value}")
for stage, s in (("pretrained", pretrained), ("fine-tuned", finetuned)):
    o = ooo_accuracy(s, ids, trials)
    print(
        f"per trial, {stage}: three-way {o.three_way:.2%}, anchor rule {o.anchor:.2%} ({o.n_trials} trials)"
    )

# %% [markdown]
# ## The most telling flips
# Ordered by the change of the model's margin for the human-kept pair. `H` marks the human majority
# odd one, `P` the pretrained model's, `F` the fine-tuned model's.

# %%
top = flips.top(TOP)
for category in ("wrong_to_right", "right_to_wrong"):
    print(f"\n{category} ({flips.counts()[category]} triplets)")
    for row in top[category]:
        print(
            f"  votes {row['n_majority']}/{row['n_votes']}, "
            f"margin {row['pretrained_margin']:+.3f} -> {row['finetuned_margin']:+.3f}"
        )
        for k in (1, 2, 3):
            vid = row[f"id_{k}"]
            marks = "".join(
                m if row[key] == vid else "."
                for m, key in (("H", "human_odd"), ("P", "pretrained_odd"), ("F", "finetuned_odd"))
            )
            print(f"    [{marks}] {vid:>4}  {row[f'caption_{k}'] or ''}")

# %%
counts = flips.counts()
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
axes[0].bar(
    CATEGORIES,
    [counts[c] for c in CATEGORIES],
    color=["tab:green", "tab:red", "tab:blue", "tab:gray", "w"],
    edgecolor="k",
)
axes[0].set(ylabel="triplets", title=f"{RUN.name}: {counts['n_scored']} scored triplets")
axes[0].tick_params(axis="x", rotation=30)
colors = {
    "wrong_to_right": "tab:green",
    "right_to_wrong": "tab:red",
    "both_right": "tab:blue",
    "both_wrong": "tab:gray",
}
for category, color in colors.items():
    sel = flips.category == category
    axes[1].scatter(
        flips.pretrained_margin[sel],
        flips.finetuned_margin[sel],
        s=10 + 6 * flips.n_votes[sel],
        color=color,
        alpha=0.7,
        label=category,
    )
lim = np.nanmax(np.abs([flips.pretrained_margin, flips.finetuned_margin])) * 1.05
axes[1].plot([-lim, lim], [-lim, lim], color="k", lw=0.6)
axes[1].axhline(0, color="k", lw=0.4)
axes[1].axvline(0, color="k", lw=0.4)
axes[1].set(
    xlabel="pretrained margin",
    ylabel="fine-tuned margin",
    title="margin for the human-kept pair (size: votes)",
)
axes[1].legend(fontsize=7)
fig.tight_layout()
fig.savefig(FIGURES / "06_flip_counts.png", dpi=120)

# %% [markdown]
# The flips as a figure (Figs. 10-11 layout): one row per triplet, its three captions.

# %%
shown = [(c, row) for c in ("wrong_to_right", "right_to_wrong") for row in top[c]]
fig, axes = plt.subplots(max(1, len(shown)), 3, figsize=(12, 1.4 * max(1, len(shown))), squeeze=False)
for ax in axes.ravel():
    ax.axis("off")
for row_axes, (category, row) in zip(axes, shown, strict=False):
    for k, ax in enumerate(row_axes, 1):
        vid = row[f"id_{k}"]
        marks = [
            m
            for m, key in (
                ("human", "human_odd"),
                ("pretrained", "pretrained_odd"),
                ("fine-tuned", "finetuned_odd"),
            )
            if row[key] == vid
        ]
        head = f"video {vid}" + (f"  odd for: {', '.join(marks)}" if marks else "")
        text = textwrap.fill(row[f"caption_{k}"] or "", 45)
        ax.text(
            0,
            1,
            head,
            fontsize=8,
            weight="bold",
            va="top",
            color="tab:green" if category == "wrong_to_right" else "tab:red",
        )
        ax.text(0, 0.75, text, fontsize=7, va="top")
fig.suptitle("fine-tuning fixes (green) and breaks (red)", fontsize=10)
fig.tight_layout()
fig.savefig(FIGURES / "06_flip_examples.png", dpi=120)

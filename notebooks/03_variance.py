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
# # 03 · Variance partitioning (Fig. 3 style)
#
# Human distances $1 - p$ over the observed pairs of the real test split, regressed on model
# distances; unique and shared $R^2$ from nested least squares (`jaxbgs.eval.stats.variance_partition`,
# paper App. F.4). Predictors available offline:
#
# - **language**: all-MiniLM-L6-v2 on the first caption of each test video (cosine distance);
# - **social-affective**: the rated communication, valence, arousal, intimacy and dominance
#   (`annotations.csv`), z-scored over the 250 videos, cosine distance;
# - **scene & action**: the other rated features (indoor, expanse, object, agent distance,
#   facingness, joint action), likewise.
#
# The paper's own Fig. 3 puts a pretrained and a fine-tuned video model against MPNet; that last
# section runs when `JAXBGS_RUN` is a run on the human data (its test videos are the real ones).
#
# Inputs: `JAXBGS_DATA` (default `../shared/data/bgs_human`), `JAXBGS_RUN` (default `runs/demo`),
# `JAXBGS_FIGURES` (default `notebooks/figures`); relative paths start at the repository root.

# %%
import json
import os

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import zscore

from jaxbgs.analysis.probes import SOCIAL_AFFECTIVE
from jaxbgs.analysis.runs import notebook_inputs
from jaxbgs.data.dataset import load_human_data
from jaxbgs.data.matrices import pair_matrix
from jaxbgs.eval.ceiling import split_half_ceiling
from jaxbgs.eval.language import FlaxSentenceEncoder, caption_embeddings
from jaxbgs.eval.rsa import aligned_similarity
from jaxbgs.eval.stats import variance_partition

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))  # headless unless a notebook front end set one
DATA, (RUN,), FIGURES = notebook_inputs()
LANGUAGE_MODEL = "all-MiniLM-L6-v2"

# %%
human = load_human_data(DATA)
test = pair_matrix(human.test, human.test_ids)
rows, cols = test.observed_pairs()
y = test.distance[rows, cols]
ceiling = split_half_ceiling(test)
ratings, names = human.ratings()
z = zscore(ratings, axis=0)
social = [names.index(a) for a in SOCIAL_AFFECTIVE]
scene = [i for i in range(len(names)) if i not in social]
print("social-affective:", [names[i] for i in social])
print("scene & action:  ", [names[i] for i in scene])
captions = caption_embeddings(FlaxSentenceEncoder(LANGUAGE_MODEL), human.captions, human.test_ids)
distances = {
    "language": 1 - aligned_similarity(captions, human.test_ids, test)[rows, cols],
    "social-affective": 1 - aligned_similarity(z[:, social], np.arange(len(z)), test)[rows, cols],
    "scene & action": 1 - aligned_similarity(z[:, scene], np.arange(len(z)), test)[rows, cols],
}

# %% [markdown]
# ## Language against each rating set (two predictors, Fig. 3 layout)

# %%
pairs = {
    other: variance_partition(y, {"language": distances["language"], other: distances[other]})
    for other in ("social-affective", "scene & action")
}
for other, p in pairs.items():
    print(
        f"language + {other}: unique language {p.unique('language'):.4f}, shared {p.shared():.4f}, "
        f"unique {other} {p.unique(other):.4f}, total {p.total:.4f} (ceiling {ceiling.split_half_r2:.3f})"
    )

# %%
fig, ax = plt.subplots(figsize=(6, 4))
for k, (other, p) in enumerate(pairs.items()):
    parts = [
        ("unique language", p.unique("language"), "tab:blue"),
        ("shared", p.shared(), "tab:purple"),
        ("unique ratings", p.unique(other), "tab:orange"),
    ]
    bottom = 0.0
    for label, value, color in parts:
        ax.bar(k, value, bottom=bottom, color=color, label=label if k == 0 else None)
        bottom += value
    ax.bar(
        k, p.r2[(other,)], fill=False, edgecolor="k", lw=1.5, label="total of the ratings" if k == 0 else None
    )
ax.axhline(ceiling.split_half_r2, ls="--", color="k", label="noise ceiling")
ax.set_xticks(range(len(pairs)), [f"language +\n{o}" for o in pairs])
ax.set(ylabel="$R^2$ of human distances", title="variance partitioning, real test split")
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(FIGURES / "03_partition_pairs.png", dpi=120)

# %% [markdown]
# ## All three predictors (commonality analysis)
# Seven parts: the unique share of each predictor, the share of each pair only, and the share of
# all three. Parts can be negative when predictors suppress each other.

# %%
three = variance_partition(y, distances)
for key, value in three.as_dict().items():
    print(f"{key:>42}: {value:+.4f}")

# %%
labels = [" + ".join(k) for k in three.parts]
fig, ax = plt.subplots(figsize=(9, 4))
ax.barh(
    labels,
    list(three.parts.values()),
    color=["tab:blue", "tab:red", "tab:orange", "tab:purple", "tab:purple", "tab:purple", "tab:gray"],
)
ax.axvline(0, color="k", lw=0.8)
ax.invert_yaxis()
ax.set(
    xlabel="$R^2$",
    title=f"commonality parts: total $R^2$ {three.total:.3f}, ceiling {ceiling.split_half_r2:.3f}",
)
fig.tight_layout()
fig.savefig(FIGURES / "03_partition_three.png", dpi=120)

# %% [markdown]
# ## A BGS run on the human data: pretrained and fine-tuned against language
# Only for runs trained on the released judgments (`config.json` names a data directory), whose
# `embeddings.npz` rows are the real test videos.

# %%
config = json.loads((RUN / "config.json").read_text()) if (RUN / "config.json").is_file() else {}
if config.get("data") is None:
    print(f"skipped: {RUN} is not a run on the human data (config.json has no data directory)")
else:
    emb = np.load(RUN / "embeddings.npz")
    video = {
        stage: 1 - aligned_similarity(emb[stage], emb["ids"], test)[rows, cols]
        for stage in ("pretrained", "finetuned")
    }
    runs = {
        stage: variance_partition(y, {"language": distances["language"], stage: d})
        for stage, d in video.items()
    }
    fig, ax = plt.subplots(figsize=(5, 4))
    for k, (stage, p) in enumerate(runs.items()):
        print(
            f"{stage}: unique language {p.unique('language'):.4f}, shared {p.shared():.4f}, "
            f"unique video {p.unique(stage):.4f}"
        )
        bottom = 0.0
        for label, value, color in [
            ("unique language", p.unique("language"), "tab:blue"),
            ("shared", p.shared(), "tab:purple"),
            ("unique video", p.unique(stage), "tab:red"),
        ]:
            ax.bar(k, value, bottom=bottom, color=color, label=label if k == 0 else None)
            bottom += value
        ax.bar(
            k,
            p.r2[(stage,)],
            fill=False,
            edgecolor="k",
            lw=1.5,
            label="total of the video model" if k == 0 else None,
        )
    ax.axhline(ceiling.split_half_r2, ls="--", color="k", label="noise ceiling")
    ax.set_xticks(range(len(runs)), list(runs))
    ax.set(ylabel="$R^2$", title=f"{RUN.name} vs {LANGUAGE_MODEL}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(FIGURES / "03_partition_run.png", dpi=120)

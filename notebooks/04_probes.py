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
# # 04 · Social-affective probes (Fig. 4 style)
#
# Ridge probes per rated attribute, fitted on the 200 training videos and scored by Pearson r on the
# 50 test videos, p from 5,000 shuffles of the held-out ratings (`jaxbgs.analysis.probes`, paper
# §3.3.2 and App. H). Features: the language baseline (all-MiniLM-L6-v2 on each video's first
# caption), the only representation of the real videos available offline; then a BGS run's
# embeddings before and after fine-tuning (on the demo, probed for its latent social variables).
#
# Inputs: `JAXBGS_DATA` (default `../shared/data/bgs_human`), `JAXBGS_RUN` (default `runs/demo`),
# `JAXBGS_FIGURES` (default `notebooks/figures`); relative paths start at the repository root.

# %%
import os

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from jaxbgs.analysis.probes import SOCIAL_AFFECTIVE, probe, probe_human
from jaxbgs.analysis.runs import load_run, notebook_inputs
from jaxbgs.data.dataset import load_human_data
from jaxbgs.data.procedural import RATING_SOCIAL
from jaxbgs.eval.language import FlaxSentenceEncoder, caption_embeddings

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))  # headless unless a notebook front end set one
DATA, (RUN,), FIGURES = notebook_inputs()
LANGUAGE_MODEL = "all-MiniLM-L6-v2"
N_PERM, SEED = 5000, 0

# %% [markdown]
# ## Language baseline: every rated attribute
# The probe needs the training videos too: 250 first captions are embedded.

# %%
human = load_human_data(DATA)
ids = np.concatenate([human.train_ids, human.test_ids])
features = caption_embeddings(FlaxSentenceEncoder(LANGUAGE_MODEL), human.captions, ids, mode="first")
result = probe_human(DATA, features, ids=ids, n_perm=N_PERM, seed=SEED)
print(f"{'attribute':>16} {'r':>7} {'p':>7} {'alpha':>9} {'n train':>8} {'n test':>7}")
for row in result.table():
    mark = "*" if row["p"] < 0.05 else " "
    social = "social-affective" if row["attribute"] in SOCIAL_AFFECTIVE else ""
    edge = "  alpha at the grid's edge" if row["alpha_at_edge"] else ""
    print(
        f"{row['attribute']:>16} {row['r']:+7.3f} {row['p']:7.4f}{mark} {row['alpha']:9.3g} "
        f"{row['n_train']:>8} {row['n_test']:>7}  {social}{edge}"
    )

# %%
rows = result.table()
fig, ax = plt.subplots(figsize=(9, 3.8))
colors = ["tab:red" if r["attribute"] in SOCIAL_AFFECTIVE else "tab:gray" for r in rows]
ax.bar([r["attribute"] for r in rows], [r["r"] for r in rows], color=colors)
for k, r in enumerate(rows):
    if r["p"] < 0.05:
        ax.annotate("*", (k, max(r["r"], 0) + 0.01), ha="center")
ax.axhline(0, color="k", lw=0.8)
ax.set(
    ylabel="Pearson r (test videos)",
    title=f"ridge probes on {LANGUAGE_MODEL} captions (red: social-affective; *: p < 0.05)",
)
ax.tick_params(axis="x", rotation=40)
fig.tight_layout()
fig.savefig(FIGURES / "04_probes_language.png", dpi=120)

# %%
fig, axes = plt.subplots(1, len(SOCIAL_AFFECTIVE), figsize=(3 * len(SOCIAL_AFFECTIVE), 3), sharey=True)
for ax, name in zip(axes, SOCIAL_AFFECTIVE, strict=True):
    j = result.names.index(name)
    ax.scatter(result.targets[j], result.predictions[j], s=12)
    ax.set(title=f"{name}: r {result.r[j]:+.2f}", xlabel="rating (test)")
axes[0].set_ylabel("probe prediction")
fig.tight_layout()
fig.savefig(FIGURES / "04_probe_predictions.png", dpi=120)

# %% [markdown]
# ## The BGS run's embeddings: pretrained vs fine-tuned
# A run saves every video's final embedding, before and after fine-tuning. On the demo the ratings
# are the clips' latent variables: the social scales the simulated observers judge (approach,
# synchrony, energy, facing) and nuisance controls (brightness, agent scale, distance, texture
# frequency); probes fit on the training and validation videos and are scored on the test videos.
# A run on the human videos is probed against `annotations.csv` instead, with its 200/50 split.

# %%
run = load_run(RUN)
probes = {}
for which in ("pretrained", "finetuned"):
    features = run.videos[which]
    if run.ratings is not None:
        names, values = run.ratings
        train, test = run.split_rows("train", "val"), run.split_rows("test")
        probes[which] = probe(features, values, names, train, test, n_perm=N_PERM, seed=SEED)
    else:
        probes[which] = probe_human(DATA, features, ids=run.videos["ids"], n_perm=N_PERM, seed=SEED)
names = probes["finetuned"].names
social = set(RATING_SOCIAL) if run.ratings is not None else set(SOCIAL_AFFECTIVE)
print(f"{'attribute':>16} {'r before':>9} {'p':>7} {'r after':>8} {'p':>7}")
for j, name in enumerate(names):
    b, a = probes["pretrained"], probes["finetuned"]
    tag = "social" if name in social else "control"
    print(f"{name:>16} {b.r[j]:+9.3f} {b.p[j]:7.4f} {a.r[j]:+8.3f} {a.p[j]:7.4f}  {tag}")

# %%
fig, ax = plt.subplots(figsize=(9, 3.8))
x = np.arange(len(names))
for k, (which, color) in enumerate((("pretrained", "tab:gray"), ("finetuned", "tab:red"))):
    ax.bar(x + (k - 0.5) * 0.4, probes[which].r, 0.4, color=color, label=which)
ax.set_xticks(x, [n + ("" if n in social else " (control)") for n in names], rotation=40, ha="right")
ax.axhline(0, color="k", lw=0.8)
ax.set(ylabel="Pearson r (test videos)", title=f"ridge probes on {run.path.name}: before vs after BGS")
ax.legend()
fig.tight_layout()
fig.savefig(FIGURES / "04_probes_run.png", dpi=120)

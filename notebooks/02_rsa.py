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
# # 02 · Model-vs-human RSA (Fig. 2 style)
#
# Spearman RSA between model and human similarity over the observed test pairs, reported as
# $R^2 = \rho^2$ with a bootstrap CI over pairs and a permutation p over video labels
# (`jaxbgs.eval.rsa`, `jaxbgs.eval.stats`):
#
# - the language baseline: all-MiniLM-L6-v2 on the first caption of each real test video (paper
#   Table 2: $R^2$ 0.077, odd-one-out 65.49%);
# - BGS runs: every layer of the pretrained and fine-tuned backbone from the run's `embeddings.npz`,
#   and the final embedding's $R^2$ with CI from its `results.json`, against the noise ceiling.
#
# Inputs: `JAXBGS_DATA` (default `../shared/data/bgs_human`), `JAXBGS_RUN` one run directory or
# several separated by `os.pathsep` (default `runs/demo`), `JAXBGS_FIGURES` (default
# `notebooks/figures`); relative paths start at the repository root.

# %%
import os
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from jaxbgs.analysis.runs import load_run, notebook_inputs
from jaxbgs.data.dataset import load_human_data
from jaxbgs.data.matrices import pair_matrix
from jaxbgs.eval.ceiling import split_half_ceiling
from jaxbgs.eval.language import FlaxSentenceEncoder, caption_embeddings
from jaxbgs.eval.ooo import ooo_accuracy
from jaxbgs.eval.rsa import aligned_similarity, rsa, similarity_matrix
from jaxbgs.eval.stats import paired_bootstrap_delta_r2

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))  # headless unless a notebook front end set one
DATA, RUNS, FIGURES = notebook_inputs()
N_BOOT, N_PERM, SEED = 1000, 1000, 0  # the paper's 1,000 permutations
LANGUAGE_MODEL = "all-MiniLM-L6-v2"

# %% [markdown]
# ## Language baseline on the real test split
# Two odd-one-out protocols, labelled: the authors' anchor rule (chance 1/2; the paper's 65.49%) and
# the standard three-way rule (chance 1/3).

# %%
human = load_human_data(DATA)
test = pair_matrix(human.test, human.test_ids)
ceiling = split_half_ceiling(test, seed=SEED)
encoder = FlaxSentenceEncoder(LANGUAGE_MODEL)
captions = caption_embeddings(encoder, human.captions, human.test_ids, mode="first")
language_sim = aligned_similarity(captions, human.test_ids, test)
language = rsa(language_sim, test, n_boot=N_BOOT, n_perm=N_PERM, seed=SEED)
language_ooo = ooo_accuracy(language_sim, test.ids, human.test)
print(
    f"{LANGUAGE_MODEL}: R^2 {language.r2:.3f} [{language.r2_ci[0]:.3f}, {language.r2_ci[1]:.3f}], "
    f"permutation p {language.p_permutation:.4f}, {language.n_pairs} pairs"
)
print(
    f"odd-one-out: anchor rule {language_ooo.anchor:.2%}, three-way {language_ooo.three_way:.2%} "
    f"({language_ooo.n_trials} trials); noise ceiling {ceiling.split_half_r2:.3f}"
)

# %% [markdown]
# ## Runs: layer-wise RSA
# The run stores its test videos' embeddings per layer (`layers_*`: the patch embedding, then every
# block) and its test trials; the human matrix is rebuilt from those trials, so a run on the demo
# data is scored against its own simulated observers.

# %%
runs = {}
for run in RUNS:
    r = load_run(run)
    emb, results, matrix = r.embeddings, r.results, r.human
    layers = {
        stage: [
            rsa(
                similarity_matrix(emb[f"layers_{stage}"][:, i]),
                matrix,
                n_boot=N_BOOT,
                n_perm=N_PERM,
                seed=SEED,
            )
            for i in range(emb[f"layers_{stage}"].shape[1])
        ]
        for stage in ("pretrained", "finetuned")
    }
    runs[str(run)] = {"emb": emb, "results": results, "matrix": matrix, "layers": layers}
    print(f"{run} ({matrix.n} test videos, {matrix.n_pairs_observed} observed pairs)")
    for stage, scores in layers.items():
        for i, s in enumerate(scores):
            print(
                f"  {stage:>10} layer {i}: R^2 {s.r2:.4f} [{s.r2_ci[0]:.4f}, {s.r2_ci[1]:.4f}] "
                f"p {s.p_permutation:.3f}   (results.json {results[f'layer_r2_{stage}'][i]:.4f})"
            )

# %%
fig, axes = plt.subplots(1, len(runs), figsize=(5.5 * len(runs), 3.8), squeeze=False)
for ax, (name, r) in zip(axes[0], runs.items(), strict=True):
    for stage, color in (("pretrained", "tab:gray"), ("finetuned", "tab:red")):
        scores = r["layers"][stage]
        x = np.arange(len(scores))
        r2 = np.array([s.r2 for s in scores])
        ci = np.array([s.r2_ci for s in scores])
        ax.plot(x, r2, "o-", color=color, label=stage)
        ax.fill_between(x, ci[:, 0], ci[:, 1], color=color, alpha=0.2)
        for i in np.flatnonzero([s.p_permutation < 0.05 for s in scores]):
            ax.annotate("*", (x[i], ci[i, 1]), ha="center", color=color)
    ax.axhline(r["results"]["noise_ceiling"], ls="--", color="k", label="noise ceiling")
    ax.set(title=f"{Path(name).name}: layer-wise RSA", xlabel="layer (0 = patch embedding)", ylabel="$R^2$")
    ax.set_xticks(x)
    ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(FIGURES / "02_layers.png", dpi=120)

# %% [markdown]
# ## Pretrained vs fine-tuned (Fig. 2 style)
# Final-embedding $R^2$ with its bootstrap CI from `results.json`, the paired bootstrap $\Delta R^2$
# (the same resampled pairs for both models), and the language baseline on the real test split.
# A run on the demo data has its own test videos: its bars and the language bar are not on the
# same stimuli, hence two panels.

# %%
for name, r in runs.items():
    rows, cols = r["matrix"].observed_pairs()
    h = r["matrix"].similarity[rows, cols]
    before = similarity_matrix(r["emb"]["pretrained"])[rows, cols]
    after = similarity_matrix(r["emb"]["finetuned"])[rows, cols]
    r["delta"] = paired_bootstrap_delta_r2(h, after, before, n_boot=N_BOOT, seed=SEED)
    d = r["delta"].delta
    print(
        f"{Path(name).name}: fine-tuned - pretrained R^2 = {d.estimate:+.4f} [{d.low:+.4f}, {d.high:+.4f}], "
        f"p {r['delta'].p_value:.3f}"
    )

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [max(2, 2 * len(runs)), 1.3]})
ax = axes[0]
for k, r in enumerate(runs.values()):
    res = r["results"]
    for j, (stage, color) in enumerate((("pretrained", "tab:gray"), ("finetuned", "tab:red"))):
        est, (lo, hi) = res[f"test_r2_{stage}"], res[f"test_r2_ci_{stage}"]
        ax.bar(
            3 * k + j,
            est,
            color=color,
            yerr=[[est - lo], [hi - est]],
            capsize=4,
            label=stage if k == 0 else None,
        )
    ax.hlines(
        res["noise_ceiling"],
        3 * k - 0.5,
        3 * k + 1.5,
        ls="--",
        color="k",
        label="noise ceiling" if k == 0 else None,
    )
    if r["delta"].p_value < 0.05:
        ax.annotate(
            "*",
            (3 * k + 0.5, max(res["test_r2_ci_pretrained"][1], res["test_r2_ci_finetuned"][1])),
            ha="center",
        )
ax.set_xticks([3 * k + 0.5 for k in range(len(runs))], [Path(name).name for name in runs])
ax.set(title="BGS runs: test $R^2$ (95% CI)", ylabel="$R^2$")
ax.legend(fontsize=8)
ax = axes[1]
ax.bar(
    0,
    language.r2,
    color="tab:blue",
    yerr=[[language.r2 - language.r2_ci[0]], [language.r2_ci[1] - language.r2]],
    capsize=4,
)
ax.axhline(ceiling.split_half_r2, ls="--", color="k")
ax.set_xticks([0], [LANGUAGE_MODEL])
ax.set(title="real test split: language baseline", ylabel="$R^2$")
fig.tight_layout()
fig.savefig(FIGURES / "02_pretrained_vs_finetuned.png", dpi=120)

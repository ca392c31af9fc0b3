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
# # 05 · Attention rollout before and after fine-tuning (Fig. 12 style)
#
# Attention rollout (Abnar & Zuidema 2020) of the pretrained backbone (`base_weights` in the run's
# `results.json`) and of the fine-tuned one (`export/flax`) on a few fresh demo clips rendered at the
# run's frames and size (`jaxbgs.data.procedural`); per-frame saliency overlays and the ranking by
# attention divergence $1 - \bar r$ (`jaxbgs.analysis.rollout`, paper App. N.3).
#
# Inputs: `JAXBGS_RUN` a run of the demo (default `runs/demo`), `JAXBGS_FIGURES` (default
# `notebooks/figures`); relative paths start at the repository root.

# %%
import os

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from checkpoints_convert import core
from jaxbgs.analysis.rollout import divergence, rollout, top_divergent, upsample
from jaxbgs.analysis.runs import load_run, notebook_inputs
from jaxbgs.data import procedural
from jaxbgs.trainer.setup import NORMALISATION
from jaxbgs.trainer.step import normalise

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))  # headless unless a notebook front end set one
_, (RUN,), FIGURES = notebook_inputs()
N_CLIPS, TOP = 12, 5

# %%
run = load_run(RUN)
config, results = run.config, run.results
before, meta = core.load(results["base_weights"])
after, _ = core.load(RUN / "export" / "flax")
print(f"pretrained: {results['base_weights']}\nfine-tuned: {RUN / 'export' / 'flax'} ({meta.arch})")

# %% [markdown]
# Fresh clips (not the judged ones), normalised as the model takes them, named by their interaction.

# %%
latents = procedural.sample_latents(N_CLIPS, rng=config["seed"] + 1)
clips = procedural.render(latents, frames=config["frames"], size=config["size"])
names = [f"clip {i}: {procedural.INTERACTIONS[k]}" for i, k in enumerate(latents.interaction)]
x = np.asarray(normalise(clips, *NORMALISATION[meta.arch]))
grid_before, grid_after = rollout(before, x), rollout(after, x)
div = divergence(grid_before, grid_after)
print(f"token grid per clip {grid_before.shape[1:]} (temporal slices, rows, cols)")
print(f"divergence 1 - r: mean {np.nanmean(div):.3f} +- {np.nanstd(div):.3f} over {N_CLIPS} clips")
top = top_divergent(div, names, k=TOP)
for name, value in top:
    print(f"  {value:.3f}  {name}")

# %%
order = np.argsort(-np.nan_to_num(div, nan=-np.inf))
fig, ax = plt.subplots(figsize=(8, 3.5))
ax.bar(range(N_CLIPS), div[order], color=["tab:red" if k < TOP else "tab:gray" for k in range(N_CLIPS)])
ax.axhline(np.nanmean(div), ls="--", color="k", label="mean")
ax.set_xticks(range(N_CLIPS), [str(i) for i in order])
ax.set(
    xlabel="clip", ylabel=r"divergence $1 - \bar r$", title="attention divergence, pretrained vs fine-tuned"
)
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(FIGURES / "05_divergence.png", dpi=120)

# %% [markdown]
# ## Saliency overlays of the most divergent clips
# Rollout mass upsampled to pixels; middle frame; left the clip, then the pretrained and the
# fine-tuned model's saliency.

# %%
frames, size = config["frames"], config["size"]
maps_before = upsample(grid_before, frames, size, size)
maps_after = upsample(grid_after, frames, size, size)
t = frames // 2
fig, axes = plt.subplots(TOP, 3, figsize=(7, 2.3 * TOP), squeeze=False)
for row, i in zip(axes, order[:TOP], strict=True):
    row[0].imshow(clips[i, t])
    row[0].set_title(f"clip {i}, 1 - r = {div[i]:.2f}", fontsize=8)
    for ax, maps, label in ((row[1], maps_before, "pretrained"), (row[2], maps_after, "fine-tuned")):
        ax.imshow(clips[i, t])
        ax.imshow(maps[i, t], cmap="jet", alpha=0.5)
        ax.set_title(label, fontsize=8)
for ax in axes.ravel():
    ax.axis("off")
fig.tight_layout()
fig.savefig(FIGURES / "05_saliency_top.png", dpi=120)

# %% [markdown]
# Every frame of the most divergent clip.

# %%
i = order[0]
fig, axes = plt.subplots(3, frames, figsize=(1.6 * frames, 5.2), squeeze=False)
for f in range(frames):
    axes[0, f].imshow(clips[i, f])
    axes[1, f].imshow(clips[i, f])
    axes[1, f].imshow(maps_before[i, f], cmap="jet", alpha=0.5)
    axes[2, f].imshow(clips[i, f])
    axes[2, f].imshow(maps_after[i, f], cmap="jet", alpha=0.5)
    axes[0, f].set_title(f"frame {f}", fontsize=8)
for ax in axes.ravel():
    ax.axis("off")
for ax, label in zip(axes[:, 0], ("clip", "pretrained", "fine-tuned"), strict=True):
    ax.text(-0.1, 0.5, label, transform=ax.transAxes, ha="right", va="center", fontsize=8)
fig.suptitle(names[i], fontsize=9)
fig.tight_layout()
fig.savefig(FIGURES / "05_saliency_frames.png", dpi=120)

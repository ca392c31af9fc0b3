"""Simulated observers: a small dataset in the released format, made on the spot, with a known answer.

Videos get latent vectors; each trial of a set-cover design (App. E) is answered by an observer
who keeps together the pair whose latents are most similar, through Luce-choice noise
(P(keep i, j) proportional to exp(cos(z_i, z_j) / temperature)). The noise sets the split-half
ceiling; the latents are the ideal model. Used by the README's first command and by the tests, so
that every analysis runs on a fresh machine with no download.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from jaxbgs.data.design import greedy_triplet_design
from jaxbgs.files import atomic_path


def answer_trials(latents: np.ndarray, items: np.ndarray, *, temperature: float, rng) -> np.ndarray:
    """The odd one per trial (T,) chosen by a noisy observer from the latent similarities."""
    z = latents / np.linalg.norm(latents, axis=1, keepdims=True)
    a, b, c = items.T
    # Column q: similarity of the pair left when q is the odd one.
    pair = np.stack([(z[b] * z[c]).sum(1), (z[a] * z[c]).sum(1), (z[a] * z[b]).sum(1)], axis=1)
    logits = pair / temperature
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    choice = (rng.random((len(items), 1)) > np.cumsum(p, axis=1)).sum(1)
    return items[np.arange(len(items)), choice]


def _design(ids: np.ndarray, repeats: int, rng) -> np.ndarray:
    rounds = [
        ids[greedy_triplet_design(len(ids), 1, seed=int(rng.integers(2**31))).triplets]
        for _ in range(repeats)
    ]
    return np.concatenate(rounds)


def simulate_release(
    out: str | os.PathLike,
    *,
    n_videos: int = 60,
    n_test: int = 20,
    dim: int = 6,
    temperature: float = 0.15,
    train_repeats: int = 3,
    test_repeats: int = 2,
    trials_per_participant: int = 40,
    seed: int = 0,
) -> Path:
    """Write a release-format directory (mapping, splits, trials, captions) plus `latents.npy`."""
    rng = np.random.default_rng(seed)
    latents = rng.normal(size=(n_videos, dim))
    ids = rng.permutation(n_videos)
    test_ids, train_ids = np.sort(ids[:n_test]), np.sort(ids[n_test:])
    names = [f"sim_{i:04d}.mp4" for i in range(n_videos)]
    train = _design(train_ids, train_repeats, rng)
    test = _design(test_ids, test_repeats, rng)
    out = Path(out)
    with atomic_path(out, directory=True) as tmp:
        (tmp / "video_mapping.csv").write_text(
            "index,video_name\n" + "".join(f"{i},{n}\n" for i, n in enumerate(names))
        )
        (tmp / "train.csv").write_text("video_name\n" + "".join(f"{names[i]}\n" for i in train_ids))
        (tmp / "test.csv").write_text("index,video_name\n" + "".join(f"{i},{names[i]}\n" for i in test_ids))
        rows = []
        for split, items in (("train", train), ("test", test)):
            odd = answer_trials(latents, items, temperature=temperature, rng=rng)
            lines = ["triplet_id,participation,stim1_name,stim2_name,stim3_name,choice,response_time"]
            for t, ((x, y, z), o) in enumerate(zip(items, odd, strict=True)):
                who = f"{split}-observer-{t // trials_per_participant}"
                line = f"{t},{who},{x},{y},{z},{o},{rng.uniform(1, 5):.3f}"
                lines.append(line)
                rows.append(line.split(",", 1)[1])
            (tmp / f"{split}_triplets.csv").write_text("\n".join(lines) + "\n")
        (tmp / "all_triplets.csv").write_text(
            "participation,stim1_name,stim2_name,stim3_name,choice,response_time\n" + "\n".join(rows) + "\n"
        )
        # Captions name the two strongest latent axes, so a sentence encoder has something to find.
        words = ["talking", "dancing", "fighting", "hugging", "playing", "working", "eating", "walking"]
        caps = ["video_name,caption_index,caption"]
        for i, n in enumerate(names):
            top = np.argsort(-latents[i])[:2] % len(words)
            caps.append(f"{n},1,two people {words[top[0]]} and {words[top[1]]}")
        (tmp / "captions.csv").write_text("\n".join(caps) + "\n")
        np.save(tmp / "latents.npy", latents)
    return out

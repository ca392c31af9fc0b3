"""Linear-probe transfer (BGS §4.4, Appendices I-J): the Wilson interval by hand, the softmax probe
against its own optimality conditions and an independent scipy fit, UCF101 through TFDS (mock data
and a tiny dataset prepared on disk in the real format, never downloaded) and PHASE from a fake
directory of mp4s in the documented layout."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import scipy.optimize

from jaxbgs.analysis import transfer as T
from jaxbgs.data import video
from jaxbgs.errors import InputError

SPEC = video.ClipSpec(frames=4, size=16)
COLOURS = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200], [200, 200, 40]], np.float64)


def colour_features(clips):
    """A deterministic 'backbone': per-channel mean and sd of the clip (B, 6)."""
    x = np.asarray(clips, np.float64)
    return np.concatenate([x.mean(axis=(1, 2, 3)), x.std(axis=(1, 2, 3))], axis=1)


def coloured_clip(rng, label, frames=8, h=24, w=32):
    """A clip whose colour says its class, with pixel noise; frame count and size vary."""
    base = COLOURS[label] + rng.normal(0, 12, size=3)
    x = base + rng.normal(0, 20, size=(frames, h, w, 3))
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------ Wilson


def test_wilson_interval_matches_hand_computation():
    # k = 80, n = 100, 95 %: z = 1.959963985, z^2 = 3.841458821, 1 + z^2/n = 1.038414588,
    # centre = (0.8 + 0.019207294) / 1.038414588 = 0.788901951,
    # half = 1.959963985 * sqrt(0.0016 + 0.000096036) / 1.038414588 = 0.077731116.
    lo, hi = T.wilson_interval(80, 100)
    assert lo == pytest.approx(0.788901951 - 0.077731116, abs=1e-8)
    assert hi == pytest.approx(0.788901951 + 0.077731116, abs=1e-8)
    # The paper's PHASE number: 81 of 100 -> "Wilson 95% CI: 0.72-0.87".
    lo, hi = T.wilson_interval(81, 100)
    assert (round(lo, 2), round(hi, 2)) == (0.72, 0.87)
    # Edges stay inside [0, 1]; arrays are vectorised; 99 % is wider than 95 %.
    lo, hi = T.wilson_interval(np.array([0, 10]), np.array([10, 10]))
    assert lo[0] == 0.0 and hi[1] == 1.0
    assert hi[0] == pytest.approx(1.959963985**2 / 10 / (1 + 1.959963985**2 / 10), abs=1e-8)  # z^2/(n+z^2)
    lo99, hi99 = T.wilson_interval(80, 100, 0.99)
    assert lo99 < 0.7111 and hi99 > 0.8666
    with pytest.raises(InputError, match="0 <= k <= n"):
        T.wilson_interval(11, 10)


# -------------------------------------------------------------------------------------- the probe


def tiny_problem(seed=0, n=60, d=3, c=3):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % c
    x = rng.normal(size=(n, d)) + rng.normal(size=(c, d))[y]
    return x, y


def test_gradient_matches_finite_differences():
    x, y = tiny_problem()
    z = (x - x.mean(0)) / x.std(0)
    theta = np.random.default_rng(1).normal(size=3 * 3 + 3)
    _, g = T.softmax_objective(theta, z, y, 0.3, 3)
    eps = 1e-6
    num = [
        (
            T.softmax_objective(theta + eps * e, z, y, 0.3, 3)[0]
            - T.softmax_objective(theta - eps * e, z, y, 0.3, 3)[0]
        )
        / (2 * eps)
        for e in np.eye(len(theta))
    ]
    np.testing.assert_allclose(g, num, atol=1e-8)


def reference_loss(params, z, y, lam, c):
    """The same objective written out per sample, for scipy to minimise with numerical gradients."""
    d = z.shape[1]
    w, b = params[: d * c].reshape(d, c), params[d * c :]
    total = 0.0
    for zi, yi in zip(z, y, strict=True):
        a = [sum(zi[k] * w[k, j] for k in range(d)) + b[j] for j in range(c)]
        top = max(a)
        total += top + math.log(sum(math.exp(v - top) for v in a)) - a[yi]
    return total / len(y) + 0.5 * lam * float(np.sum(w * w))


def test_jax_objective_equals_the_numpy_reference():
    x, y = tiny_problem(n=40, d=5, c=4)
    z = (x - x.mean(0)) / x.std(0)
    theta = np.random.default_rng(2).normal(size=5 * 4 + 4)
    with T._objective("jax", z, y, 0.7, 4) as fun:
        v, g = fun(theta)
    v_ref, g_ref = T.softmax_objective(theta, z, y, 0.7, 4)
    assert v == pytest.approx(v_ref, abs=1e-12)
    np.testing.assert_allclose(g, g_ref, atol=1e-12)


@pytest.mark.parametrize("backend", ["jax", "numpy"])
def test_fit_is_stationary_and_matches_an_independent_scipy_fit(backend):
    x, y = tiny_problem()
    lam = 0.05
    fit = T.fit_softmax(x, y, lam, tol=1e-10, backend=backend)
    assert fit.converged
    z = (x - fit.mean) / fit.scale
    _, g = T.softmax_objective(fit.theta, z, y, lam, 3)
    assert np.abs(g).max() < 1e-6  # first-order optimality (the gradient starts at O(0.1))
    ref = scipy.optimize.minimize(reference_loss, np.zeros(12), args=(z, y, lam, 3), method="BFGS", tol=1e-10)
    np.testing.assert_allclose(fit.weights, ref.x[:9].reshape(3, 3), atol=1e-4)
    b_ref = ref.x[9:]
    np.testing.assert_allclose(fit.bias - fit.bias.mean(), b_ref - b_ref.mean(), atol=1e-4)  # b up to a shift


def test_strong_penalty_leaves_the_class_frequencies():
    # Closed form: with W forced to 0 the optimal softmax(b) is the empirical class distribution.
    x, y = tiny_problem(n=50)
    y = np.where(np.arange(50) < 30, 0, np.where(np.arange(50) < 45, 1, 2))
    fit = T.fit_softmax(x, y, 1e8)
    p = np.exp(fit.bias - fit.bias.max())
    np.testing.assert_allclose(p / p.sum(), [0.6, 0.3, 0.1], atol=1e-6)
    assert np.abs(fit.weights).max() < 1e-6


def test_stratified_split_takes_each_class_share():
    y = np.array([0] * 10 + [1] * 5 + [2] * 1)
    tr, va = T.stratified_split(y, 0.2, seed=3)
    assert np.intersect1d(tr, va).size == 0 and len(tr) + len(va) == len(y)
    assert np.bincount(y[va], minlength=3).tolist() == [2, 1, 0]  # the single class-2 video trains
    tr2, va2 = T.stratified_split(y, 0.2, seed=3)
    np.testing.assert_array_equal(va, va2)
    assert not np.array_equal(va, T.stratified_split(y, 0.2, seed=4)[1])


def test_linear_probe_planted_vs_shuffled_labels():
    rng = np.random.default_rng(0)
    c, d = 5, 8
    centres = rng.normal(size=(c, d)) * 4
    scales = rng.uniform(0.1, 100, size=d)  # unequal feature scales: standardisation matters
    ytr, yte = np.arange(200) % c, np.arange(200) % c
    xtr = (centres[ytr] + rng.normal(size=(200, d))) * scales
    xte = (centres[yte] + rng.normal(size=(200, d))) * scales
    res = T.linear_probe(xtr, ytr, xte, yte, seeds=(0, 1, 2))
    assert res.accuracy.min() > 0.95 and res.converged.all()
    assert res.val_accuracy.shape == (3, len(T.LAMBDAS))
    noise = T.linear_probe(xtr, rng.permutation(ytr), xte, yte, seeds=(0,))
    assert abs(noise.mean - 1 / c) < 0.12
    np.testing.assert_allclose(res.wilson()[0], T.wilson_interval(int(res.n_correct[0]), 200))
    assert "3 seeds" in res.summary() and "Wilson" in noise.summary()


# ------------------------------------------------------------------------------ feature extraction


def test_extract_features_pads_the_last_batch_and_keeps_order():
    rng = np.random.default_rng(0)
    clips = [coloured_clip(rng, i % 4, frames=5 + i) for i in range(6)]
    shapes = []

    def embed(batch):
        shapes.append((batch.shape, batch.dtype))
        return colour_features(batch)

    x = T.extract_features(iter(clips), embed, SPEC, n=6, batch=4, progress=False)
    assert x.shape == (6, 6) and x.dtype == np.float32
    assert shapes == [((4, 4, 16, 16, 3), np.uint8)] * 2  # one shape: one compilation
    np.testing.assert_allclose(
        x, colour_features(np.stack([video.prepare(c, SPEC) for c in clips])), rtol=1e-6
    )
    with pytest.raises(InputError, match="expected \\(4, d\\)"):
        T.extract_features(iter(clips), lambda b: np.zeros((4, 3, 2)), SPEC, batch=4, progress=False)


# ---------------------------------------------------------------------------------------- UCF101


@pytest.fixture(scope="module")
def tfds():
    pytest.importorskip(
        "tensorflow", reason="TFDS's UCF101 builder defines its video feature with TensorFlow"
    )
    return pytest.importorskip("tensorflow_datasets")


def write_metadata(tfds, root, config="ucf101_1", counts=(("train", 60), ("test", 80))):
    """The metadata a prepared TFDS UCF101 leaves (dataset_info.json, features.json, labels), no records."""
    builder = tfds.builder(f"ucf101/{config}", data_dir=str(root), file_format="array_record")
    splits = [
        tfds.core.SplitInfo(name=s, shard_lengths=[n], num_bytes=0, filename_template=None) for s, n in counts
    ]
    builder.info.set_splits(tfds.core.SplitDict(splits))
    builder.data_path.mkdir(parents=True, exist_ok=True)
    builder.info.write_to_directory(builder.data_path)
    return builder.data_path


def fake_ucf101(n, c, seed, shuffle_labels=False):
    """UCF101-like examples: {'video': uint8 (T, H, W, 3), 'label': int}, colour planted by class."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % c
    videos = [coloured_clip(rng, lab, frames=int(rng.integers(6, 14)), h=24, w=32) for lab in labels]
    if shuffle_labels:
        labels = rng.permutation(labels)
    return [{"video": v, "label": np.int64(lab)} for v, lab in zip(videos, labels, strict=True)]


@pytest.mark.parametrize("shuffle", [False, True], ids=["planted", "random-labels"])
def test_ucf101_probe_on_tfds_mock_data(tfds, tmp_path, shuffle):
    write_metadata(tfds, tmp_path)
    data = {"train": fake_ucf101(60, 4, 0, shuffle), "test": fake_ucf101(80, 4, 1, shuffle)}
    seen = []

    def as_data_source(self, split, **kwargs):
        seen.append((self.name, self.builder_config.name, split))
        return data[split]

    with tfds.testing.mock_data(
        policy=tfds.testing.MockPolicy.USE_FILES, data_dir=str(tmp_path), as_data_source_fn=as_data_source
    ):
        res = T.ucf101_probe(tmp_path, colour_features, SPEC, batch=8, progress=False)
    assert seen == [("ucf101", "ucf101_1", "train"), ("ucf101", "ucf101_1", "test")]
    assert len(res.classes) == 101 and res.classes[0] == "ApplyEyeMakeup"
    assert res.n_train == 60 and res.n_test == 80 and res.seeds == (0, 1, 2)
    if shuffle:
        assert abs(res.mean - 0.25) < 0.15  # chance is 1/4
    else:
        assert res.accuracy.min() > 0.95


def grey_video(t_len, i):
    """Frame t of video i is the flat grey 8 t + i (so sampling and decoding can be read back)."""
    grey = (8 * np.arange(t_len) + i).astype(np.uint8)
    return np.broadcast_to(grey[:, None, None, None], (t_len, 16, 16, 3))


@pytest.fixture(scope="module")
def prepared(tfds, tmp_path_factory):
    """A tiny UCF101 prepared on disk by TFDS itself (jpeg frames, real records), per file format."""
    from etils import epath
    from tensorflow_datasets.video import ucf101

    class TinyUcf101(ucf101.Ucf101, skip_registration=True):
        name = "ucf101"
        code_path = epath.Path(ucf101.__file__)  # TFDS would look a test module up via importlib_resources

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(0), "test": self._generate_examples(1)}

        def _generate_examples(self, part):
            for i in range(6):
                yield f"v{part}_{i}.avi", {"video": grey_video(10 + i, i), "label": i % 3}

    roots = {}
    for fmt in ("array_record", "tfrecord"):
        root = tmp_path_factory.mktemp(fmt)
        TinyUcf101(config="ucf101_1", data_dir=str(root), file_format=fmt).download_and_prepare()
        roots[fmt] = root
    return roots


@pytest.mark.parametrize("fmt", ["array_record", "tfrecord"])
def test_open_ucf101_reads_prepared_records_and_samples_frames(prepared, fmt):
    split = T.open_ucf101(prepared[fmt], "train")
    assert len(split) == 6 and split.classes[:3] == ("ApplyEyeMakeup", "ApplyLipstick", "Archery")
    got = sorted((clip[:, 0, 0, 0].tolist(), label) for clip, label in split.examples(SPEC))
    want = []
    for i in range(6):
        idx = np.floor(np.linspace(0, 10 + i - 1, 4)).astype(int)  # the authors' sampling, both ends
        want.append(((8 * idx + i).tolist(), i % 3))
    for (g, gl), (w, wl) in zip(got, sorted(want), strict=True):
        assert gl == wl and np.abs(np.array(g) - w).max() <= 2  # jpeg of a flat grey frame


def test_ucf101_features_with_a_tiny_random_backbone(prepared):
    from flax import nnx

    from jaxbgs import lora
    from jaxbgs.models import vjepa2
    from tests.models.test_vjepa2 import TINY

    embed = T.model_embed(vjepa2.Model(TINY, lora=lora.LoRAConfig(), rngs=nnx.Rngs(0)), "vjepa2")
    spec = video.ClipSpec(frames=4, size=32)
    f = T.ucf101_features(prepared["array_record"], embed, spec, batch=4, progress=False)
    (xtr, ytr), (xte, _) = f["train"], f["test"]
    assert xtr.shape == (6, TINY.hidden_size) and xte.shape == (6, TINY.hidden_size)
    assert np.isfinite(xtr).all() and sorted(ytr.tolist()) == [0, 0, 1, 1, 2, 2]
    assert np.abs(np.diff(xtr, axis=0)).max() > 0  # different videos, different features


def test_ucf101_missing_data_says_what_and_how(tfds, tmp_path, monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("the loader must never download")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", no_download)
    with pytest.raises(InputError, match="TFDS data directory not found") as e:
        T.open_ucf101(tmp_path / "nowhere", "train")
    assert "download_and_prepare" in str(e.value) and "nowhere" in str(e.value)
    with pytest.raises(InputError, match="not prepared") as e:
        T.open_ucf101(tmp_path, "train")
    assert "ucf101/ucf101_1/2.0.0" in str(e.value) and "tensorflow-datasets" in str(e.value)
    write_metadata(tfds, tmp_path, config="ucf101_1_256")
    with pytest.raises(InputError, match="prepared here: ucf101/ucf101_1_256/2.0.0"):
        T.open_ucf101(tmp_path, "train")
    with pytest.raises(InputError, match="no split 'validation'"):
        T.open_ucf101(tmp_path, "validation", config="ucf101_1_256")
    with pytest.raises(InputError, match="unknown UCF101 config"):
        T.open_ucf101(tmp_path, "train", config="ucf101_4")


def test_ucf101_without_tensorflow_says_what_to_install(tmp_path, monkeypatch):
    try:  # a real import first: TFDS imported while TensorFlow is blocked would stay half-initialised
        import tensorflow_datasets  # noqa: F401
    except ImportError:
        pass
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # as if not installed
    with pytest.raises(InputError, match="pip install tensorflow"):
        T.open_ucf101(tmp_path, "train")


# ----------------------------------------------------------------------------------------- PHASE


def write_phase(root, n_train=8, n_test=4, seed=0):
    rng = np.random.default_rng(seed)
    (root / "videos").mkdir(parents=True)
    lines = ["video,label,split,notes"]
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(3 * n):
            lab = i % 3
            name = f"{split}_{i:03d}"
            video.write_test_video(
                root / "videos" / f"{name}.mp4", coloured_clip(rng, lab, frames=6, h=16, w=16)
            )
            shown = name if i % 2 else f"{name}.mp4"  # the extension may be left off
            lines.append(
                f"{shown},{T.PHASE_CLASSES[lab].upper() if i == 0 else T.PHASE_CLASSES[lab]},{split},x"
            )
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def phase_root(tmp_path_factory):
    return write_phase(tmp_path_factory.mktemp("phase"))


def test_phase_probe_end_to_end(phase_root):
    data = T.read_phase(phase_root)
    assert len(data.names) == 36 and data.is_test.sum() == 12
    assert all(p.suffix == ".mp4" and p.is_file() for p in data.paths)
    assert data.labels[:3].tolist() == [0, 1, 2]
    res = T.phase_probe(phase_root, colour_features, SPEC, batch=8, progress=False)
    assert res.classes == T.PHASE_CLASSES and res.n_train == 24 and res.n_test == 12
    assert res.accuracy[0] == 1.0
    np.testing.assert_allclose(res.wilson()[0], T.wilson_interval(12, 12))
    np.testing.assert_allclose(res.f1()[0], [1.0, 1.0, 1.0])
    assert "Wilson 95% CI" in res.summary() and res.to_dict()["n_correct"] == [12]


@pytest.mark.parametrize(
    "csv, match",
    [
        ("video,split\nA.mp4,train\n", "lacks column\\(s\\) label"),
        ("video,label,split\nA.mp4,friendly,train\nB,hostile,test\n", "row 2 \\(line 3\\): unknown label"),
        ("video,label,split\nA.mp4,friendly,val\n", "row 1 \\(line 2\\): unknown split"),
        ("video,label,split\nA.mp4,friendly,train,extra\n", "row 1 \\(line 2\\): 4 fields"),
        ("video,label,split\nA.mp4,friendly\n", "row 1 \\(line 2\\): 2 fields"),
        ("video,label,split\nA.mp4,friendly,train\nA.mp4,neutral,test\n", "row 2 \\(line 3\\).*listed twice"),
        ("video,label,split\n,friendly,train\n", "empty video name"),
        ("video,label,split\nA.mp4,friendly,train\n", "no test rows"),
        ("", "lacks column"),
    ],
    ids=["no-label-column", "bad-label", "bad-split", "extra-field", "short-row", "duplicate", "empty",
         "no-test", "empty-file"],
)  # fmt: skip
def test_phase_malformed_labels_name_file_and_row(tmp_path, csv, match):
    (tmp_path / "videos").mkdir()
    (tmp_path / "labels.csv").write_text(csv)
    with pytest.raises(InputError, match=match) as e:
        T.read_phase(tmp_path)
    assert "labels.csv" in str(e.value)


def test_phase_missing_video_and_layout(phase_root, tmp_path):
    with pytest.raises(InputError, match="labels file not found"):
        T.read_phase(tmp_path)
    root = tmp_path / "p"
    (root / "videos").mkdir(parents=True)
    text = (phase_root / "labels.csv").read_text().replace("test_005", "test_999")
    (root / "labels.csv").write_text(text)
    for p in (phase_root / "videos").iterdir():
        (root / "videos" / p.name).symlink_to(p)
    with pytest.raises(InputError, match="1 of 36 videos not found") as e:
        T.read_phase(root)
    assert "row 30 (line 31) 'test_999'" in str(e.value) and "labels.csv" in str(e.value)


def test_cli_reports_missing_phase_data_in_one_line(tmp_path, capsys):
    rc = T.main(["phase", "--data-dir", str(tmp_path), "--checkpoint", "x", "--frames", "4", "--size", "16"])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "labels.csv" in err and err.count("\n") == 1

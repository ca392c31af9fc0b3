"""The GazeFollow protocol (SocialFusion §3.4, §4.1; Gaze-LLE `gazelle/utils.py`): the target heatmap
against a line-by-line port of `get_heatmap`, the bilinear resize against torch `F.interpolate` (up,
down, mixed, and in JAX under jit), the AUC and L2s against Gaze-LLE's own code (torch resize + sklearn),
hand-computed cases, and the chance baselines."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from jaxbgs.errors import InputError
from jaxbgs.socialfusion import gaze as G
from jaxbgs.socialfusion import metrics as M

torch = pytest.importorskip("torch")


def gazelle_heatmap(gazex, gazey, height, width, sigma=3):
    """Gaze-LLE `get_heatmap` (after Chong et al. / Newell `draw_labelmap`), ported statement by
    statement with numpy in place of the torch tensor."""
    img = np.zeros((height, width), np.float32)
    if gazex < 0 or gazey < 0:
        return img
    gazex, gazey = int(gazex * width), int(gazey * height)
    ul = [int(gazex - 3 * sigma), int(gazey - 3 * sigma)]
    br = [int(gazex + 3 * sigma + 1), int(gazey + 3 * sigma + 1)]
    if ul[0] >= img.shape[1] or ul[1] >= img.shape[0] or br[0] < 0 or br[1] < 0:
        return img
    size = 6 * sigma + 1
    x = np.arange(0, size, 1, float)
    y = x[:, np.newaxis]
    x0 = y0 = size // 2
    g = np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * sigma**2))
    g_x = max(0, -ul[0]), min(br[0], img.shape[1]) - ul[0]
    g_y = max(0, -ul[1]), min(br[1], img.shape[0]) - ul[1]
    img_x = max(0, ul[0]), min(br[0], img.shape[1])
    img_y = max(0, ul[1]), min(br[1], img.shape[0])
    img[img_y[0] : img_y[1], img_x[0] : img_x[1]] += g[g_y[0] : g_y[1], g_x[0] : g_x[1]]
    return img / img.max()


def gazelle_auc(heatmap, gazex, gazey, height, width):
    """Gaze-LLE `gazefollow_auc`: GT pixels at the original size, torch bilinear resize, sklearn."""
    target = np.zeros((height, width))
    for x, y in zip(gazex, gazey, strict=True):
        if x >= 0:
            x, y = int(x * float(width)), int(y * float(height))
            target[min(y, height - 1), min(x, width - 1)] = 1
    t = torch.from_numpy(np.asarray(heatmap, np.float32))[None, None]
    resized = torch.nn.functional.interpolate(t, (height, width), mode="bilinear").squeeze()
    return roc_auc_score(target.flatten(), resized.flatten().numpy())


def gazelle_l2(heatmap, gazex, gazey):
    """Gaze-LLE `gazefollow_l2`."""
    pred_y, pred_x = np.unravel_index(np.asarray(heatmap).flatten().argmax(), (64, 64))
    pred_x, pred_y = pred_x / 64.0, pred_y / 64.0
    gazex, gazey = np.array(gazex), np.array(gazey)
    avg_l2 = np.sqrt((pred_x - gazex.mean()) ** 2 + (pred_y - gazey.mean()) ** 2)
    return np.sqrt((pred_x - gazex) ** 2 + (pred_y - gazey) ** 2).min(), avg_l2


@pytest.fixture(scope="module")
def heads():
    """Six heads: a few annotators each (padded with -1), smooth random 64x64 maps, small images."""
    rng = np.random.default_rng(0)
    n, k = 6, 5
    points = rng.uniform(0.05, 0.95, size=(n, k, 2))
    counts = np.array([1, 2, 5, 3, 4, 5])
    masks = np.arange(k)[None] < counts[:, None]
    points[~masks] = -1.0
    points[2, 0] = (1.0, 1.0)  # on the far edge: clamped to the last pixel
    coarse = rng.random((n, 8, 8)).astype(np.float32)
    maps = G.upsample_bilinear(coarse, (64, 64)) + 0.01 * rng.random((n, 64, 64)).astype(np.float32)
    sizes = np.array([[96, 72], [64, 64], [50, 90], [120, 40], [33, 47], [80, 80]])
    return maps, points, masks, sizes


# ---------------------------------------------------------------------------------- target map


def test_target_heatmap_matches_gazelle_pixel_for_pixel():
    rng = np.random.default_rng(1)
    pts = np.concatenate(
        [
            rng.random((20, 2)),
            [[0.0, 0.0], [0.999, 0.5], [1.0, 1.0], [1.1, 0.5], [0.03, 0.97], [-1.0, 0.5], [0.5, -1.0]],
        ]
    )
    got = G.target_heatmap(pts)
    assert got.shape == (len(pts), 64, 64) and got.dtype == np.float32
    for p, g in zip(pts, got, strict=True):
        want = gazelle_heatmap(*p, 64, 64)
        np.testing.assert_allclose(g, want, rtol=0, atol=1e-7)
    # sigma 2.5 (3 sigma not whole: the original's off-by-one near the border) and another size.
    for p in rng.random((10, 2)) * [1, 0.15]:
        want = gazelle_heatmap(*p, 32, 32, sigma=2.5)
        np.testing.assert_allclose(G.target_heatmap(p, size=32, sigma=2.5), want, atol=1e-7)


def test_target_heatmap_by_hand_and_batched():
    h = G.target_heatmap([0.5, 0.5])  # centre pixel (32, 32)
    assert h[32, 32] == 1.0 and h.max() == 1.0
    assert h[32, 35] == pytest.approx(math.exp(-9 / 18), rel=1e-6)  # 3 px right: exp(-d^2 / 2 sigma^2)
    assert h[23, 32] == pytest.approx(math.exp(-81 / 18), rel=1e-6)  # 9 px up: the window's edge
    assert h[32, 42] == 0.0 and h[22, 32] == 0.0  # 10 px away: outside the 19-pixel window
    assert not G.target_heatmap([-1.0, -1.0]).any()  # out of frame: empty, not NaN
    # sigma 2.5, row c = 3: the window starts at trunc(3 - 7.5) = -4 and its centre tap 8 lands on
    # row 4, not 3 (get_heatmap's truncation toward zero, kept).
    assert np.unravel_index(G.target_heatmap([0.5, 3.5 / 32], 32, 2.5).argmax(), (32, 32)) == (4, 16)
    batch = G.target_heatmap(np.array([[[0.5, 0.5], [-1, -1], [0.1, 0.9]]] * 2))
    assert batch.shape == (2, 3, 64, 64)
    np.testing.assert_array_equal(batch[1, 0], h)


# ----------------------------------------------------------------------------------- resampling


@pytest.mark.parametrize(
    "shape,out", [((2, 64, 64), (90, 120)), ((48, 48), (64, 64)), ((64, 64), (17, 23)), ((5, 7), (13, 3))]
)
def test_upsample_bilinear_matches_torch(shape, out):
    # Up-, down- and mixed resampling: torch does not antialias with align_corners=False.
    rng = np.random.default_rng(2)
    x = rng.random(shape).astype(np.float32)
    t = torch.from_numpy(x).reshape(-1, 1, *shape[-2:])
    want = torch.nn.functional.interpolate(t, out, mode="bilinear", align_corners=False).numpy()
    got = G.upsample_bilinear(x, out)
    assert got.dtype == np.float32 and got.shape == (*shape[:-2], *out)
    np.testing.assert_allclose(got.reshape(want.shape), want, rtol=0, atol=3e-7)
    x64 = x.astype(np.float64)
    want64 = torch.nn.functional.interpolate(torch.from_numpy(x64).reshape(t.shape), out, mode="bilinear")
    np.testing.assert_allclose(G.upsample_bilinear(x64, out).reshape(want.shape), want64.numpy(), atol=1e-13)


def test_upsample_bilinear_in_jax_under_jit():
    import jax
    import jax.numpy as jnp

    x = np.random.default_rng(3).random((2, 48, 48)).astype(np.float32)
    got = jax.jit(lambda h: G.upsample_bilinear(h, (64, 64)))(jnp.asarray(x))
    assert isinstance(got, jax.Array) and got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got), G.upsample_bilinear(x, (64, 64)), atol=1e-6)
    np.testing.assert_array_equal(G.upsample_bilinear(x[0], (48, 48)), x[0])  # same size: identity


# ---------------------------------------------------------------------------------------- metrics


def test_auc_single_annotator_pixel_by_hand():
    # At the heatmap's own size the resize is the identity; the map holds the ranks 0..4095, and the
    # one target pixel (row 10, col 20) has 10 * 64 + 20 = 660 negatives below it: AUC = 660 / 4095.
    h = np.arange(64 * 64, dtype=np.float32).reshape(64, 64)
    assert G.auc(h, [[20.5 / 64, 10.5 / 64]], (64, 64)) == pytest.approx(660 / 4095, abs=1e-12)
    assert G.auc(h, [[1.0, 1.0], [-1, -1]], (64, 64)) == 1.0  # clamped to the last pixel; -1 skipped
    assert G.auc(np.ones((64, 64)), [[0.3, 0.3]], (640, 480)) == 0.5  # flat map: all tied


def test_auc_and_l2_match_gazelle(heads):
    maps, points, masks, sizes = heads
    for h, p, m, (w, hh) in zip(maps, points, masks, sizes, strict=True):
        want = gazelle_auc(h, p[:, 0], p[:, 1], hh, w)  # gazelle skips the -1 padding itself
        assert G.auc(h, p, (w, hh)) == pytest.approx(want, abs=1e-9)
        assert G.l2_errors(h, p[m], None) == pytest.approx(gazelle_l2(h, p[m, 0], p[m, 1]), abs=1e-12)
    got = G.gaze_metrics(maps, points, masks, sizes, per_head=True)
    assert set(got) == {"auc", "min_l2", "avg_l2"} and got["auc"].shape == (6,)
    means = G.gaze_metrics(maps, points, None, sizes)  # masks default: x >= 0
    assert means == {k: pytest.approx(float(v.mean()), abs=1e-15) for k, v in got.items()}
    assert M.task_metrics("gaze", maps, {"points": points, "masks": masks, "sizes": sizes}) == means


def test_l2_errors_by_hand():
    h = np.zeros((64, 64))
    h[16, 32] = 1.0  # argmax: column 32, row 16 -> predicted point (0.5, 0.25)
    pts = np.array([[0.5, 0.5], [0.8, 0.25], [-1, -1]])
    min_l2, avg_l2 = G.l2_errors(h, pts, np.array([True, True, False]))
    assert min_l2 == pytest.approx(0.25)  # (0.5, 0.5): 0.25 straight down
    assert avg_l2 == pytest.approx(math.hypot(0.65 - 0.5, 0.375 - 0.25))  # to the mean (0.65, 0.375)
    h[40, 2] = 1.0  # a tie: the first cell in row-major order wins, as torch / numpy argmax
    assert G.l2_errors(h, pts, np.array([True, True, False]))[0] == pytest.approx(0.25)


def test_chance_baselines(heads):
    _, points, masks, sizes = heads
    got = G.chance(points, masks, sizes, prior=G.prior_heatmap(points, masks))
    assert set(got) == {"uniform", "centre", "prior"} and got["uniform"]["auc"] == 0.5
    # uniform: the L2s averaged over every cell, by brute force for head 0 (one annotator)
    g = np.arange(64) / 64
    cx, cy = np.meshgrid(g, g)
    p = points[0, 0]
    d0 = np.hypot(cx - p[0], cy - p[1]).mean()
    per_head_min = G._uniform_l2(points, masks, 64)[0]
    assert per_head_min[0] == pytest.approx(d0, abs=1e-12)
    # centre: argmax at (0.5, 0.5) for every head
    centre = np.mean([np.min(np.hypot(*(points[b, masks[b]] - 0.5).T)) for b in range(6)])
    assert got["centre"]["min_l2"] == pytest.approx(centre, abs=1e-12)
    assert 0 < got["centre"]["auc"] < 1
    flat = M.chance("gaze", {"points": points, "masks": masks, "sizes": sizes})
    assert flat["auc"] == 0.5 and flat["min_l2_centre"] == got["centre"]["min_l2"]


def test_bad_heads_are_input_errors(heads):
    maps, points, masks, sizes = heads
    empty = masks.copy()
    empty[3] = False
    with pytest.raises(InputError, match="head 3"):
        G.gaze_metrics(maps, points, empty, sizes)
    wrong = masks.copy()
    wrong[0, 4] = True  # a -1 padding point marked valid
    with pytest.raises(InputError, match="head 0 point 4"):
        G.l2_errors(maps, points, wrong)
    with pytest.raises(InputError, match="sizes"):
        G.gaze_metrics(maps, points, masks, sizes[:, :1])
    with pytest.raises(InputError, match="x >= 0"):
        G.auc(maps[0], [[-1.0, 0.2]], (64, 64))

"""The demo encoder's pretraining targets (non-social, and about what the clips actually show), and
the demo's data split."""

import numpy as np

import experiments
from jaxbgs.data import procedural
from jaxbgs.trainer import demo


def test_motion_statistics_follow_the_scene():
    z = procedural.sample_latents(200, np.random.default_rng(0))
    layout, motion = demo.kinematics(z, 8)
    assert layout.shape == (200, 8) and motion.shape == (200, 9)
    change = motion[:, 1]  # last minus first distance between the agents
    strong = np.abs(z.approach) > 0.5
    assert (np.sign(change[strong]) == -np.sign(z.approach[strong])).all()  # approachers end closer
    assert np.corrcoef(motion[:, 3], z.energy)[0, 1] > 0.5  # energetic agents move faster
    # Appearance never moves anything: recolouring and reshaping leave layout and motion unchanged.
    recoloured = z.replace(color_a=(z.color_a + 1) % 8, shape_b=(z.shape_b + 1) % 3)
    for x, y in zip(demo.kinematics(recoloured, 8), (layout, motion), strict=True):
        np.testing.assert_array_equal(x, y)


def test_targets_are_weighted_standardised_groups():
    z = procedural.sample_latents(300, np.random.default_rng(1))
    y = demo.pretraining_targets(z, 8)
    n_app = procedural.nuisance_embedding(z).shape[1]
    assert y.shape == (300, n_app + 8 + 9) and y.dtype == np.float32
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-5)
    w = demo.TARGET_WEIGHTS
    np.testing.assert_allclose(y[:, :n_app].std(0), w["appearance"], rtol=1e-3)
    np.testing.assert_allclose(y[:, n_app : n_app + 8].std(0), w["layout"], rtol=1e-3)
    np.testing.assert_allclose(y[:, n_app + 8 :].std(0), w["motion"], rtol=1e-3)
    social = procedural.social_embedding(z)
    # No target is a social variable: motion statistics correlate with them (velocity alignment is
    # high in chases, |r| 0.92) but reproduce none. Energy (column 7) is exempt: mean speed tracks it
    # by design, it is what energy looks like.
    r = np.abs(np.corrcoef(y.T, social.T)[: y.shape[1], y.shape[1] :])
    assert r.shape[1] == 9
    assert (np.delete(r, 7, axis=1) < 0.98).all(), np.delete(r, 7, axis=1).max(0)


def test_validation_videos_get_their_own_judged_design():
    data, _ = demo.demo_data(experiments.get("demo"))
    n = len(data.val_ids)
    assert data.val.within(data.val_ids).all() and not np.isin(data.train.items, data.val_ids).any()
    # Every pair of validation videos judged in each of the session's set covers: not the ~90 trials
    # (about one per pair) that the stimulus-disjoint carve of the training trials leaves.
    assert (data.val_matrix.counts[np.triu_indices(n, 1)] >= demo.VAL_REPEATS).all()
    assert len(data.val) > 5 * n

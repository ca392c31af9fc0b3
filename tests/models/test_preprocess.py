import numpy as np
import pytest

from jaxbgs.errors import InputError
from jaxbgs.models import preprocess, vjepa2


def test_frame_indices_match_the_authors_linspace_and_strides():
    np.testing.assert_array_equal(preprocess.frame_indices(100, 4), [0, 33, 66, 99])
    np.testing.assert_array_equal(preprocess.frame_indices(100, 4, stride=4), [0, 4, 8, 12])
    with pytest.raises(InputError, match="16 frames at stride 4 need 61 frames, the clip has 20"):
        preprocess.frame_indices(20, 16, stride=4)


def test_vjepa2_preprocess_shapes_and_normalisation():
    video = np.full((10, 60, 80, 3), 255, np.uint8)
    out = vjepa2.preprocess(video, size=32, frames=4)
    assert out.shape == (4, 32, 32, 3)
    np.testing.assert_allclose(
        out[0, 0, 0], (1 - np.array(vjepa2.IMAGENET_MEAN)) / np.array(vjepa2.IMAGENET_STD), rtol=1e-5
    )


def test_resize_short_side_and_crop():
    video = np.zeros((1, 40, 100, 3), np.float32)
    assert preprocess.resize_short_side(video, 20).shape == (1, 20, 50, 3)
    assert preprocess.center_crop(np.zeros((1, 20, 50, 3)), 20).shape == (1, 20, 20, 3)
    with pytest.raises(InputError, match="cannot crop 30x30 from 20x50"):
        preprocess.center_crop(np.zeros((1, 20, 50, 3)), 30)

"""The frozen-feature cache: built once, read back, and never stale."""

import os

import numpy as np
from PIL import Image

from jaxbgs.socialfusion import features
from jaxbgs.socialfusion.data.samples import Sample


def _write(path, value: int) -> None:
    Image.fromarray(np.full((40, 48, 3), value, np.uint8)).save(path)


def test_cache_reads_back_and_follows_rewritten_images(tmp_path):
    enc = features.demo_encoder(32, grid=4, width=32)
    paths = [tmp_path / f"{k}.png" for k in range(2)]
    for k, p in enumerate(paths):
        _write(p, 40 + 100 * k)
    samples = [Sample(task="emotion", image=str(p), label=k) for k, p in enumerate(paths)]
    cache = tmp_path / "cache"
    first = features.build_pool("emotion", samples, enc, size=32, cache=cache)
    again = features.build_pool("emotion", samples, enc, size=32, cache=cache)
    np.testing.assert_array_equal(np.asarray(again.features), first.features)
    assert len(list((cache / "socialfusion").iterdir())) == 1  # read back, not rebuilt

    _write(paths[0], 200)  # same name, new pixels
    st = os.stat(paths[0])
    os.utime(paths[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a later mtime, even on coarse clocks
    fresh = features.build_pool("emotion", samples, enc, size=32, cache=cache)
    assert len(list((cache / "socialfusion").iterdir())) == 2
    assert not np.allclose(np.asarray(fresh.features[0]), first.features[0])
    np.testing.assert_array_equal(np.asarray(fresh.features[1]), first.features[1])

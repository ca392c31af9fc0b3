"""Video decoding, clip geometry, the uint8 cache and video-file resolution, on tiny generated videos."""

from __future__ import annotations

import logging
import os
import wave
from pathlib import Path

import numpy as np
import pytest

from jaxbgs.data import video as V
from jaxbgs.errors import InputError
from jaxbgs.models import preprocess as pp

T, H, W = 20, 48, 64


def colours(n: int = T, shift: int = 0) -> np.ndarray:
    """Frame i is one flat colour that encodes i: (10 + 12 i, 245 - 12 i, 128 + shift)."""
    i = np.arange(n)
    return np.stack([10 + 12 * i, 245 - 12 * i, np.full(n, 128 + shift)], -1).astype(np.float64)


def clip(n: int = T, shift: int = 0, h: int = H, w: int = W) -> np.ndarray:
    return np.broadcast_to(colours(n, shift)[:, None, None], (n, h, w, 3)).astype(np.uint8)


def frame_ids(video: np.ndarray, n: int = T) -> np.ndarray:
    """Which source frame each decoded frame is, from its mean colour (codec error is ~2 levels)."""
    mean = video.reshape(len(video), -1, 3).mean(1)
    dist = np.abs(mean[:, None] - colours(n)[None]).max(-1)
    assert dist.min(1).max() < 4, "decoded colours are too far from any source frame"
    return dist.argmin(1)


@pytest.fixture(scope="module")
def vid(tmp_path_factory) -> Path:
    return V.write_test_video(tmp_path_factory.mktemp("v") / "clip.mp4", clip())


# ---------------------------------------------------------------------------------------------- decode


def test_decode_samples_linspace_over_all_frames(vid):
    out = V.decode(vid, 8)
    assert out.dtype == np.uint8 and out.shape == (8, H, W, 3)
    np.testing.assert_array_equal(frame_ids(out), np.floor(np.linspace(0, T - 1, 8)).astype(int))
    assert frame_ids(out)[-1] == T - 1  # both ends included, as the authors sample


def test_decode_all_frames_and_stride(vid):
    assert V.decode(vid, None).shape == (T, H, W, 3)
    np.testing.assert_array_equal(frame_ids(V.decode(vid, None)), np.arange(T))
    np.testing.assert_array_equal(frame_ids(V.decode(vid, 5, stride=4)), [0, 4, 8, 12, 16])
    np.testing.assert_array_equal(frame_ids(V.decode(vid, 7, stride=3)), np.arange(7) * 3)


@pytest.mark.parametrize("ext", [".avi", ".webm", ".mov"])
def test_decode_other_containers(tmp_path, ext):
    path = V.write_test_video(tmp_path / f"c{ext}", clip(12))
    np.testing.assert_array_equal(frame_ids(V.decode(path, 4), 12), [0, 3, 7, 11])


def test_mpeg4_fallback(tmp_path, monkeypatch):
    monkeypatch.setattr(V, "_encoder", lambda suffix: "mpeg4")
    path = V.write_test_video(tmp_path / "m.mp4", clip())
    np.testing.assert_array_equal(frame_ids(V.decode(path, 4)), [0, 6, 12, 19])


def test_decode_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"nope\.mp4.*not found"):
        V.decode(tmp_path / "nope.mp4", 4)


def test_decode_text_file_renamed(tmp_path):
    p = tmp_path / "notes.mp4"
    p.write_text("these are not frames\n" * 20)
    with pytest.raises(InputError, match=r"notes\.mp4: cannot read the video.*Fix: .*re-encode"):
        V.decode(p, 4)


def test_decode_truncated(tmp_path, vid):
    p = tmp_path / "cut.mp4"
    p.write_bytes(vid.read_bytes()[: vid.stat().st_size // 2])
    with pytest.raises(InputError, match=r"cut\.mp4: cannot read the video"):
        V.decode(p, 4)


def test_decode_truncated_with_the_index_first(tmp_path, vid):
    """With the index ahead of the frames (mp4 "faststart", as served for streaming), a cut file
    opens and decodes its first frames without complaint; the declared count gives it away."""
    import av

    fast = tmp_path / "fast.mp4"
    with (
        av.open(str(vid)) as src,
        av.open(str(fast), "w", format="mp4", options={"movflags": "faststart"}) as dst,
    ):
        out = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = out
                dst.mux(packet)
    assert len(V.decode(fast, None)) == T  # whole: every frame
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(fast.read_bytes()[: int(fast.stat().st_size * 0.6)])
    with pytest.raises(InputError, match=rf"cut\.mp4: only \d+ of the {T} frames the file declares"):
        V.decode(cut, 4)


def test_decode_no_video_stream(tmp_path):
    p = tmp_path / "sound.wav"
    with wave.open(str(p), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
        w.writeframes(np.zeros(800, np.int16).tobytes())
    with pytest.raises(InputError, match=r"sound\.wav: the file has no video stream"):
        V.decode(p, 4)


def test_decode_zero_frames(tmp_path):
    p = V.write_test_video(tmp_path / "empty.avi", clip(0))
    with pytest.raises(InputError, match=r"empty\.avi: no frames could be decoded"):
        V.decode(p, 4)


def test_decode_fewer_frames_than_asked_repeats_them_and_says_so(vid, caplog):
    with caplog.at_level(logging.WARNING, logger="jaxbgs.data.video"):
        frames = V.decode(vid, 2 * T)
    assert len(frames) == 2 * T and f"{T} frames, fewer than the {2 * T} asked for" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="jaxbgs.data.video"):
        V.decode(vid, T)
    assert caplog.text == ""


def test_decode_too_short_for_stride(vid):
    with pytest.raises(InputError, match=r"clip\.mp4: 8 frames at stride 4 need 29 frames, the clip has 20"):
        V.decode(vid, 8, stride=4)


# -------------------------------------------------------------------------------------------- geometry


def test_clip_spec_validates():
    with pytest.raises(InputError, match="mode"):
        V.ClipSpec(8, 32, mode="squash")
    with pytest.raises(InputError, match="frames"):
        V.ClipSpec(0, 32)
    with pytest.raises(InputError, match="stride"):
        V.ClipSpec(8, 32, stride=0)
    assert V.ClipSpec(8, 32).to_dict() == {"frames": 8, "size": 32, "mode": "crop", "stride": None}


def test_prepare_crop_keeps_aspect_and_centre():
    # left third red-ish, right third blue-ish, middle grey: a centre crop of the short-side resize
    # keeps the middle and loses the sides; a direct resize keeps all three bands.
    video = np.full((4, H, W, 3), 128, np.uint8)
    video[:, :, :8] = (255, 0, 0)
    video[:, :, -8:] = (0, 0, 255)
    out = V.prepare(video, V.ClipSpec(4, 32, "crop"))
    assert out.dtype == np.uint8 and out.shape == (4, 32, 32, 3)
    # 48x64 -> 32x42, centre crop drops 5 columns each side; the 8-px bands become ~5.3 px
    assert abs(int(out[0, 16, 0, 0]) - 128) <= 40 and abs(int(out[0, 16, -1, 2]) - 128) <= 40
    ref = np.asarray(pp.center_crop(pp.resize_short_side(video, 32), 32))
    np.testing.assert_array_equal(out, np.clip(np.rint(ref), 0, 255).astype(np.uint8))

    out = V.prepare(video, V.ClipSpec(4, 32, "resize"))
    assert out.shape == (4, 32, 32, 3)
    assert out[0, 16, 0, 0] > 200 and out[0, 16, -1, 2] > 200  # both bands survive
    ref = np.asarray(pp.resize(video, 32, 32))
    np.testing.assert_array_equal(out, np.clip(np.rint(ref), 0, 255).astype(np.uint8))


def test_prepare_tall_video_and_sampling():
    video = clip(T, h=64, w=48)  # portrait
    out = V.prepare(video, V.ClipSpec(5, 16, "crop"))
    assert out.shape == (5, 16, 16, 3)
    np.testing.assert_array_equal(frame_ids(out), np.floor(np.linspace(0, T - 1, 5)).astype(int))
    out = V.prepare(video, V.ClipSpec(5, 16, "resize", stride=2))
    np.testing.assert_array_equal(frame_ids(out), [0, 2, 4, 6, 8])
    with pytest.raises(InputError, match=r"\(T, H, W, 3\)"):
        V.prepare(video[0], V.ClipSpec(5, 16))


def test_normalize_matches_preprocess():
    batch = np.random.default_rng(0).integers(0, 256, (2, 3, 4, 4, 3), dtype=np.uint8)
    mean, std = (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)
    out = V.normalize(batch, mean, std)
    assert out.dtype == np.float32 and out.shape == batch.shape
    np.testing.assert_allclose(np.asarray(out), (batch / 255.0 - 0.45) / 0.225, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------------- cache


@pytest.fixture
def three(tmp_path) -> dict[int, Path]:
    d = tmp_path / "videos"
    d.mkdir()
    return {i: V.write_test_video(d / f"v{i}.mp4", clip(T, shift=10 * i)) for i in (7, 2, 5)}


@pytest.fixture
def counting(monkeypatch):
    calls = []
    real = V.decode

    def decode(path, *a, **k):
        calls.append(Path(path).name)
        return real(path, *a, **k)

    monkeypatch.setattr(V, "decode", decode)
    return calls


def test_cache_build_open_and_reuse(tmp_path, three, counting):
    spec = V.ClipSpec(4, 16, "crop")
    path = V.build_cache(three, spec, tmp_path / "cache", progress=False)
    assert path.parent == tmp_path / "cache" and sorted(os.listdir(path)) == ["index.json", "videos.npy"]
    assert len(counting) == 3
    c = V.open_cache(path)
    assert c.ids == (2, 5, 7) and c.spec == spec and len(c) == 3 and 5 in c and 3 not in c
    assert isinstance(c.array, np.memmap) and c.array.shape == (3, 4, 16, 16, 3) and c.array.dtype == np.uint8
    batch = c.get([7, 2])
    assert batch.shape == (2, 4, 16, 16, 3) and batch.dtype == np.uint8
    np.testing.assert_array_equal(batch[0], V.prepare(V.decode(three[7], 4), spec))
    assert abs(batch[1, ..., 2].mean() - (128 + 20)) < 4 and abs(batch[0, ..., 2].mean() - (128 + 70)) < 4
    assert c.get(5).shape == (4, 16, 16, 3)
    with pytest.raises(InputError, match=r"video id 3 is not in the cache"):
        c.get([2, 3])

    counting.clear()
    mtime = (path / "videos.npy").stat().st_mtime_ns
    assert V.build_cache(three, spec, tmp_path / "cache", progress=False) == path
    assert counting == [] and (path / "videos.npy").stat().st_mtime_ns == mtime

    # another spec or another set of videos is another cache
    other = V.build_cache(three, V.ClipSpec(4, 16, "resize"), tmp_path / "cache", progress=False)
    sub = V.build_cache({2: three[2]}, spec, tmp_path / "cache", progress=False)
    assert len({path, other, sub}) == 3


def test_changed_source_invalidates(tmp_path, three, counting, caplog):
    spec = V.ClipSpec(4, 16, "resize")
    path = V.build_cache(three, spec, tmp_path / "cache", progress=False)
    before = V.open_cache(path).get(5)
    V.write_test_video(three[5], clip(T, shift=-100))
    st = three[5].stat()
    os.utime(three[5], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    counting.clear()
    with caplog.at_level(logging.WARNING, logger=V.__name__):
        assert V.build_cache(three, spec, tmp_path / "cache", progress=False) == path
    assert "stale" in caplog.text and "video 5 changed" in caplog.text
    assert len(counting) == 3
    after = V.open_cache(path).get(5)
    assert abs(int(before[..., 2].mean()) - int(after[..., 2].mean())) > 90
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")]


def test_failing_decode_leaves_no_cache(tmp_path, three):
    (bad := three[5]).write_text("corrupt")
    with pytest.raises(InputError, match=r"v5\.mp4: cannot read the video"):
        V.build_cache(three, V.ClipSpec(4, 16), tmp_path / "cache", progress=False)
    assert list((tmp_path / "cache").iterdir()) == []
    assert bad.exists()


def test_open_cache_errors(tmp_path):
    with pytest.raises(InputError, match="not a video cache"):
        V.open_cache(tmp_path)


# ----------------------------------------------------------------------------------------------- paths


def test_video_paths_resolves_names(tmp_path):
    d = tmp_path / "videos"
    (d / "dancing").mkdir(parents=True)
    for name in ("a.mp4", "b.webm", "dancing/c.mp4"):
        (d / name).write_bytes(b"x")
    got = V.video_paths(d, {0: "a.mp4", 1: "b", 2: "c.mp4"})
    assert got == {0: d / "a.mp4", 1: d / "b.webm", 2: d / "dancing" / "c.mp4"}
    # a sequence of names indexed by id, as HumanData.video_names, and a subset of ids
    assert V.video_paths(d, ("a.mp4", "b", "c")) == {0: d / "a.mp4", 1: d / "b.webm", 2: d / "dancing/c.mp4"}
    assert V.video_paths(d, ("a.mp4", "b", "c"), ids=[1]) == {1: d / "b.webm"}


def test_video_paths_lists_all_missing(tmp_path):
    d = tmp_path / "videos"
    d.mkdir()
    (d / "v3.mp4").write_bytes(b"x")
    names = {i: f"v{i}.mp4" for i in range(10)}
    with pytest.raises(InputError) as e:
        V.video_paths(d, names)
    msg = str(e.value)
    assert msg.startswith(f"{d}: 9 of 10 videos not found: id 0 ('v0.mp4'), id 1 ('v1.mp4')")
    assert "and 4 more" in msg and "v3.mp4" not in msg and "Fix:" in msg
    with pytest.raises(InputError, match="videos directory not found"):
        V.video_paths(tmp_path / "nowhere", names)


@pytest.mark.realdata
def test_video_paths_takes_human_data(human, tmp_path):
    names = human.video_names
    for n in names[:3]:
        (tmp_path / n).write_bytes(b"x")
    assert V.video_paths(tmp_path, human, ids=[0, 1, 2]) == {i: tmp_path / names[i] for i in range(3)}
    with pytest.raises(InputError, match=rf"{len(names) - 3} of {len(names)} videos not found"):
        V.video_paths(tmp_path, human)

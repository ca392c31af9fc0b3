"""The common record, class tables, square geometry and batching of SocialFusion's data
(jaxbgs/socialfusion/data/samples.py), checked on tiny lossless images with hand-computed boxes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from jaxbgs.errors import InputError
from jaxbgs.socialfusion.data import samples as S

RED, BG = (255, 0, 0), (0, 0, 255)


def picture(path, w, h, box_px, dot_px=None):
    """A blue w x h PNG with a red pixel box [x1, x2) x [y1, y2) and, optionally, one green pixel."""
    a = np.zeros((h, w, 3), np.uint8)
    a[:] = BG
    x1, y1, x2, y2 = box_px
    a[y1:y2, x1:x2] = RED
    if dot_px is not None:
        a[dot_px[1], dot_px[0]] = (0, 255, 0)
    Image.fromarray(a).save(path)
    return str(path)


def norm(box_px, w, h):
    x1, y1, x2, y2 = box_px
    return (x1 / w, y1 / h, x2 / w, y2 / h)


def pixels_in(image, box, inset=1):
    """Pixels of `image` strictly inside normalised `box`, `inset` pixels away from its edges."""
    s = image.shape[0]
    x1, y1, x2, y2 = (round(v * s) for v in box)
    return image[y1 + inset : y2 - inset, x1 + inset : x2 - inset].reshape(-1, 3)


# ------------------------------------------------------------------------------------------ tables


def test_class_tables_follow_the_official_orders():
    assert S.TASKS == ("gesture", "pisc_domain", "pisc_relation", "lam", "gaze", "emotion")
    g = S.CLASSES["gesture"]
    assert len(g) == 34 and len(set(g)) == 34 and g.index("no_gesture") == 33
    assert g[:4] == ("grabbing", "grip", "holy", "point") and g.index("peace") == 21  # constants.py
    assert S.CLASSES["pisc_domain"] == ("intimate", "non-intimate", "no relation")
    assert S.CLASSES["pisc_relation"][3] == "professional" and len(S.CLASSES["pisc_relation"]) == 6
    assert S.CLASSES["lam"] == ("not looking", "looking") and S.CLASSES["gaze"] == ()
    assert S.CLASSES["emotion"][7] == "contempt" and len(S.CLASSES["emotion"]) == 8
    # friends/family/couple -> intimate, professional/commercial -> non-intimate, none -> none
    assert [S.CLASSES["pisc_domain"][d] for d in S.RELATION_DOMAIN] == ["intimate"] * 3 + [
        "non-intimate"
    ] * 2 + ["no relation"]
    assert S.CLIP_MEAN_RGB == tuple(int(255 * m) for m in (0.48145466, 0.4578275, 0.40821073))


@pytest.mark.parametrize(
    "kwargs, text",
    [
        ({"task": "dance", "label": 0}, "unknown task"),
        ({"task": "lam", "label": 2}, "out of range"),
        ({"task": "gaze", "label": 0}, "out of range"),
        ({"task": "lam", "label": 0, "boxes": ((0.5, 0.0, 0.2, 1.0),)}, "x1 <= x2"),
        ({"task": "lam", "label": 0, "crop": (10, 10, 10, 20)}, "non-empty"),
        ({"task": "gaze", "label": -1, "points": ((float("nan"), 0.1),)}, "finite"),
    ],
)
def test_sample_rejects_inconsistent_records(kwargs, text):
    with pytest.raises(InputError, match=text) as e:
        S.Sample(image="x.jpg", key="f.csv:line 3", **kwargs)
    assert "f.csv:line 3" in str(e.value)


# ---------------------------------------------------------------------------------------- geometry


def test_content_box_hand_computed():
    assert S.content_box(40, 20, 64) == (0.0, 0.25, 1.0, 0.75)  # 64 x 32 pasted at top 16
    assert S.content_box(20, 40, 64) == (0.25, 0.0, 0.75, 1.0)
    assert S.content_box(30, 10, 10) == (0.0, 0.3, 1.0, 0.6)  # 10 x 3 at top (10 - 3) // 2 = 3
    assert S.content_box(30, 10, 10, "resize") == (0.0, 0.0, 1.0, 1.0)
    with pytest.raises(InputError, match="unknown mode"):
        S.content_box(3, 3, 3, "crop")
    pts = np.array([[0.0, 0.0], [1.0, 1.0], [0.3, 0.8]])
    content = S.content_box(30, 10, 10)
    np.testing.assert_allclose(S.to_output(pts, content), [[0, 0.3], [1, 0.6], [0.3, 0.3 + 0.8 * 0.3]])
    np.testing.assert_allclose(S.to_source(S.to_output(pts, content), content), pts)


@pytest.mark.parametrize("w, h", [(40, 20), (20, 40), (30, 30)])
def test_pad_keeps_box_and_point_on_their_pixels(tmp_path, w, h):
    box_px = (w // 4, h // 4, w // 2, 3 * h // 4)
    dot = (3 * w // 4, h // 5)
    path = picture(tmp_path / "a.png", w, h, box_px, dot)
    point = ((dot[0] + 0.5) / w, (dot[1] + 0.5) / h)  # the dot pixel's centre
    s = S.Sample(task="gaze", image=path, label=-1, boxes=(norm(box_px, w, h),), points=(point,), size=(w, h))
    p = S.prepare(s, 64, fill=(7, 8, 9))
    assert p.image.shape == (64, 64, 3) and p.image.dtype == np.uint8 and p.size == (w, h)
    assert p.content == S.content_box(w, h, 64)
    inside = pixels_in(p.image, p.boxes[0])
    assert len(inside) > 20 and np.all(inside[:, 0] > 200) and np.all(inside[:, 2] < 60)  # red
    ring = np.asarray(p.boxes[0]) + np.array([-2, -2, 2, 2]) / 64  # just outside the box: blue
    edge = p.image[round(ring[1] * 64) - 1, round(ring[0] * 64) : round(ring[2] * 64)]
    assert np.all(edge[:, 2] > 200) and np.all(edge[:, 0] < 60)
    px, py = (p.points[0] * 64).astype(int)
    assert p.image[py, px, 1] > 60 and p.image[py, px, 1] > p.image[py, px, 0]  # the green dot (blurred)
    x0, y0, x1, y1 = (round(v * 64) for v in p.content)
    pad = np.concatenate([p.image[:y0].reshape(-1, 3), p.image[y1:].reshape(-1, 3)])
    pad = np.concatenate([pad, p.image[:, :x0].reshape(-1, 3), p.image[:, x1:].reshape(-1, 3)])
    assert (w == h) == (len(pad) == 0)
    assert np.all(pad == (7, 8, 9))


def test_resize_mode_and_crop(tmp_path):
    w, h = 40, 20
    box_px = (30, 2, 38, 18)
    path = picture(tmp_path / "b.png", w, h, box_px)
    s = S.Sample(task="gesture", image=path, label=0, boxes=(norm(box_px, w, h),))
    p = S.prepare(s, 32, mode="resize")
    assert p.content == (0.0, 0.0, 1.0, 1.0) and p.size == (40, 20)
    np.testing.assert_allclose(p.boxes[0], norm(box_px, w, h), atol=1e-6)
    assert np.all(pixels_in(p.image, p.boxes[0])[:, 0] > 200)
    # crop to the right half: the box is given in the cropped frame, the size is the crop's
    crop = (20, 0, 40, 20)
    s = S.Sample(task="gesture", image=path, label=0, crop=crop, boxes=(norm((10, 2, 18, 18), 20, 20),))
    p = S.prepare(s, 20)
    assert p.size == (20, 20) and p.content == (0.0, 0.0, 1.0, 1.0)
    np.testing.assert_array_equal(p.image, S.load_image(path, crop))
    assert np.all(pixels_in(p.image, p.boxes[0], 0)[:, 0] == 255)


def test_image_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match="image file not found") as e:
        S.prepare(S.Sample(task="lam", image=str(tmp_path / "gone.jpg"), label=0, key="k1"), 8)
    assert "gone.jpg" in str(e.value) and "k1" in str(e.value)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(InputError, match="cannot decode") as e:
        S.prepare(S.Sample(task="lam", image=str(bad), label=0), 8)
    assert "bad.jpg" in str(e.value)
    path = picture(tmp_path / "c.png", 40, 20, (0, 0, 1, 1))
    with pytest.raises(InputError, match="annotations say 20x40"):
        S.prepare(S.Sample(task="lam", image=path, label=0, size=(20, 40)), 8)
    S.prepare(S.Sample(task="lam", image=path, label=0, size=(80, 40)), 8)  # a rescaled copy is fine
    with pytest.raises(InputError, match="size must be"):
        S.prepare(S.Sample(task="lam", image=path, label=0), 0)


def test_stack_fixed_shapes_masks_and_padding(tmp_path):
    path = picture(tmp_path / "d.png", 16, 8, (0, 0, 8, 8))
    a = S.prepare(
        S.Sample(task="pisc_relation", image=path, label=4, boxes=((0, 0, 0.5, 1), (0.5, 0, 1, 1))), 16
    )
    b = S.prepare(
        S.Sample(task="gaze", image=path, label=-1, boxes=((0, 0, 0.1, 0.1),), points=((0.5, 0.5),) * 3), 16
    )
    batch = S.stack([a, b], max_points=5)
    assert batch["image"].shape == (2, 16, 16, 3) and batch["image"].dtype == np.uint8
    np.testing.assert_array_equal(batch["label"], [4, -1])
    np.testing.assert_array_equal(batch["task"], [S.TASKS.index("pisc_relation"), S.TASKS.index("gaze")])
    np.testing.assert_array_equal(batch["box_mask"], [[True, True], [True, False]])
    np.testing.assert_array_equal(batch["point_mask"].sum(1), [0, 3])
    assert np.all(batch["points"][~batch["point_mask"]] == -1) and batch["points"].shape == (2, 5, 2)
    np.testing.assert_allclose(batch["points"][1, :3], [[0.5, 0.5]] * 3)
    np.testing.assert_allclose(batch["boxes"][0, 1], [0.5, 0.25, 1.0, 0.75])  # 16x8 padded into 16x16
    np.testing.assert_array_equal(batch["size"], [[16, 8], [16, 8]])
    with pytest.raises(InputError, match="more than max_points=2"):
        S.stack([b], max_points=2)
    with pytest.raises(InputError, match="different shapes"):
        S.stack([a, S.prepare(S.Sample(task="lam", image=path, label=1), 8)])
    with pytest.raises(InputError, match="empty"):
        S.stack([])

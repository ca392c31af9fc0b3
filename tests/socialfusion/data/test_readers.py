"""The five native-layout readers (jaxbgs/socialfusion/data/*.py) on tiny hand-written fixtures whose
expected samples are computed by hand from each dataset's documented rules."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image

from jaxbgs.errors import InputError
from jaxbgs.socialfusion.data import readers as R
from jaxbgs.socialfusion.data.samples import CLASSES


def jpg(path, w, h, color=(90, 120, 150)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), color, np.uint8)).save(path, format="JPEG")


def dump(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def write(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))


def raises(fn, *texts):
    with pytest.raises(InputError) as e:
        fn()
    for text in texts:
        assert text in str(e.value), f"{text!r} not in {str(e.value)!r}"
    return e.value


# ---------------------------------------------------------------------------------------- GazeFollow

# path, idx, body x y w h, eye x y, gaze x y, head box px (x_min y_min x_max y_max), [inout], source, meta
GF_TRAIN = [
    "train/a.jpg,1,0.1,0.1,0.5,0.8,0.25,0.2,0.5,0.6,60,10,40,30,1,src,m",  # inverted x: swapped
    "train/a.jpg,2,0.1,0.1,0.5,0.8,0.25,0.2,-1,-1,10,10,20,20,-1,src,m",  # invalid
    "train/a.jpg,3,0.1,0.1,0.5,0.8,0.25,0.2,-1,-1,10,10,20,20,0,src,m",  # out of frame
    "train/a.jpg,4,0.1,0.1,0.5,0.8,0.9,0.1,0.7,0.7,190,-5,210,20,1,m",  # Chong's 16 columns; clipped
    "train/gone.jpg,1,0.1,0.1,0.5,0.8,0.25,0.2,0.5,0.6,1,1,5,5,1,src,m",  # image not on disk
    "train/a.jpg,5,0.1,0.1,0.5,0.8,0.25,0.2,7.5,0.6,10,10,20,20,1,src,m",  # in frame, gaze outside
]
GF_TEST = [  # two heads x 3 annotators, grouped by (path, eye_x)
    "test2/b.jpg,1,0,0,1,1,0.2,0.3,0.50,0.50,10,5,20,15,src,m",
    "test2/b.jpg,1,0,0,1,1,0.2,0.3,0.52,0.48,10,5,20,15,src,m",
    "test2/b.jpg,1,0,0,1,1,0.2,0.3,0.54,0.46,10,5,20,15,src,m",
    "test2/b.jpg,2,0,0,1,1,0.7,0.3,0.10,0.90,60,5,70,15,src,m",
    "test2/b.jpg,2,0,0,1,1,0.7,0.3,-1,-1,60,5,70,15,src,m",
    "test2/b.jpg,2,0,0,1,1,0.7,0.3,0.14,0.86,60,5,70,15,src,m",
    "test2/b.jpg,2,0,0,1,1,0.7,0.3,1.40,0.20,60,5,70,15,src,m",  # beyond the image
]


@pytest.fixture(scope="module")
def gazefollow(tmp_path_factory):
    root = tmp_path_factory.mktemp("gf") / "data_new"
    jpg(root / "train/a.jpg", 200, 100)
    jpg(root / "test2/b.jpg", 100, 50)
    write(root / "train_annotations_release.txt", GF_TRAIN)
    write(root / "test_annotations_release.txt", GF_TEST)
    return root


def test_gazefollow_train_protocol(gazefollow, caplog):
    with caplog.at_level(logging.WARNING, logger="jaxbgs.socialfusion.data"):
        s = R.read_gazefollow(gazefollow, "train")
    assert [x.key for x in s] == [
        "train_annotations_release.txt:line 1",
        "train_annotations_release.txt:line 4",
    ]
    np.testing.assert_allclose(s[0].boxes[0], (40 / 200, 10 / 100, 60 / 200, 30 / 100))  # swapped
    np.testing.assert_allclose(s[1].boxes[0], (190 / 200, 0, 1.0, 20 / 100))  # clipped to the image
    assert s[0].points == ((0.5, 0.6),) and s[0].size == (200, 100) and s[0].label == -1
    assert s[0].image == str(gazefollow / "train/a.jpg") and s[0].task == "gaze"
    assert s.dropped == {
        "inout=-1 (invalid annotation)": 1,
        "inout=0 (target out of frame; in_frame_only)": 1,
        "image missing on disk": 1,
        "in-frame targets outside the image (gaze not in [0, 1])": 1,
    }
    assert "gone.jpg" in caplog.text and "line 6" in caplog.text
    s = R.read_gazefollow(gazefollow, "train", in_frame_only=False)
    assert len(s) == 3 and s[1].points == () and s[1].key.endswith("line 3")  # kept out-of-frame head
    assert len(R.read_gazefollow(gazefollow, "train", limit=1)) == 1


def test_gazefollow_test_groups_annotators(gazefollow):
    s = R.read_gazefollow(gazefollow, "test")
    assert len(s) == 2
    assert s[0].points == ((0.50, 0.50), (0.52, 0.48), (0.54, 0.46)) and s[0].key.endswith("lines 1-3")
    assert s[1].points == ((0.10, 0.90), (0.14, 0.86)) and s[1].key.endswith("lines 4-7")
    np.testing.assert_allclose(s[1].boxes[0], (0.6, 0.1, 0.7, 0.3))
    assert s[1].size == (100, 50)
    assert s.dropped == {
        "test annotator points with a negative coordinate (skipped)": 1,
        "test annotator points beyond the image (> 1)": 1,
    }


@pytest.mark.parametrize(
    "split, line, texts",
    [
        ("train", "train/a.jpg,1,0.1,0.1,0.5,0.8,0.25,0.2,0.5,0.6,1,1,5,5,1", ["15 fields", "line 2"]),
        ("train", "train/a.jpg,1,0.1,0.1,0.5,0.8,0.25,0.2,x,0.6,1,1,5,5,1,s,m", ["gaze_x", "'x'", "line 2"]),
        ("train", "train/a.jpg,1,0.1,0.1,0.5,0.8,0.25,0.2,0.5,0.6,1,1,5,5,2,s,m", ["inout is 2", "line 2"]),
        ("test", "test2/b.jpg,1,0,0,1,1,0.2,0.3,0.5,0.5,11,5,20,15,s,m", ["differs", "line 2", "line 1"]),
    ],
)
def test_gazefollow_malformed_rows(tmp_path, split, line, texts):
    first = GF_TRAIN[0] if split == "train" else GF_TEST[0]
    jpg(tmp_path / "train/a.jpg", 20, 10)
    write(tmp_path / f"{split}_annotations_release.txt", [first, line])
    raises(lambda: R.read_gazefollow(tmp_path, split), f"{split}_annotations_release.txt", *texts)


def test_gazefollow_missing_files_and_bad_split(tmp_path):
    raises(
        lambda: R.read_gazefollow(tmp_path, "test"), "test_annotations_release.txt", "not found", "download"
    )
    raises(lambda: R.read_gazefollow(tmp_path / "nope", "test"), "nope", "attention-target-detection")
    raises(lambda: R.read_gazefollow(tmp_path, "val"), "no validation split")
    write(tmp_path / "train_annotations_release.txt", GF_TRAIN[1:3])
    raises(
        lambda: R.read_gazefollow(tmp_path, "train"), "no usable samples", "inout=-1 (invalid annotation): 1"
    )


# ---------------------------------------------------------------------------------------------- PISC


def pisc_root(root):
    people = [[0, 0, 10, 10], [20, 10, 40, 50], [50, 0, 60, 20]]
    dump(root / "annotation_image_info.json", [
        {"id": 1, "imgW": 100, "imgH": 50, "bbox": people},
        {"id": 2, "imgW": 100, "imgH": 50, "bbox": [[60, 40, 50, 10], [-5, 0, 120, 60]]},
        {"id": 3, "imgW": 100, "imgH": 50, "bbox": people},
    ])  # fmt: skip
    dump(root / "relationship.json", {"1": {"1 3": 4, "2 1": 1}, "2": {"2 1": 6}})
    dump(root / "domain.json", {"1": {"1 3": 2}, "2": {"2 1": 3}})
    dump(root / "relationship_split/relation_trainidx.json", ["1", "2", "3"])
    dump(root / "relationship_split/relation_validx.json", [2])
    dump(root / "domain_split/domain_trainidx.json", ["2", "1"])
    jpg(root / "image/00001.jpg", 100, 50)
    jpg(root / "image/2.jpg", 100, 50)  # the unpadded name is accepted too
    jpg(root / "image/00003.jpg", 100, 50)
    return root


@pytest.fixture(scope="module")
def pisc(tmp_path_factory):
    return pisc_root(tmp_path_factory.mktemp("pisc"))


def test_pisc_relation_pairs(pisc):
    s = R.read_pisc(pisc, "train", "relation")
    assert [(x.key, x.label) for x in s] == [
        ("relationship.json:image 1 pair '1 3'", 3),  # 4 professional, 1-based
        ("relationship.json:image 1 pair '2 1'", 0),
        ("relationship.json:image 2 pair '2 1'", 5),
    ]
    assert s[0].boxes == ((0, 0, 0.1, 0.2), (0.5, 0, 0.6, 0.4))  # persons 1 and 3, key order
    assert s[1].boxes == ((0.2, 0.2, 0.4, 1.0), (0, 0, 0.1, 0.2))
    assert s[2].boxes == ((0, 0, 1, 1), (0.5, 0.2, 0.6, 0.8))  # clipped; inverted corners swapped
    assert s[0].image == str(pisc / "image/00001.jpg") and s[2].image == str(pisc / "image/2.jpg")
    assert s[0].task == "pisc_relation" and s[0].size == (100, 50)
    assert s.dropped == {"split images without relation labels": 1}  # image 3
    assert [x.label for x in R.read_pisc(pisc, "val", "relation")] == [5]  # relation_validx.json
    assert len(R.read_pisc(pisc, "train", "relation", limit=2)) == 2


def test_pisc_domain_has_its_own_split(pisc):
    s = R.read_pisc(pisc, "train", "domain")
    assert [(x.task, x.label, x.key) for x in s] == [
        ("pisc_domain", 2, "domain.json:image 2 pair '2 1'"),
        ("pisc_domain", 1, "domain.json:image 1 pair '1 3'"),
    ]
    assert CLASSES["pisc_domain"][s[1].label] == "non-intimate"
    raises(
        lambda: R.read_pisc(pisc, "test", "domain"), "domain_testidx.json", "domain_trainidx.json", "zenodo"
    )
    raises(lambda: R.read_pisc(pisc, "train", "fine"), "unknown PISC subtask")


@pytest.mark.parametrize(
    "file, data, texts",
    [
        ("relationship.json", {"1": {"1 9": 2}}, ["relationship.json", "image 1 pair '1 9'", "1..3"]),
        ("relationship.json", {"1": {"1 1": 2}}, ["pair '1 1'", "two different"]),
        ("relationship.json", {"1": {"1-2": 2}}, ["pair '1-2'", "'i j'"]),
        ("relationship.json", {"1": {"1 2": 7}}, ["label 7 outside 1..6", "pair '1 2'"]),
        ("relationship.json", {"1": {"1 2": "two"}}, ["field label", "'two'"]),
        ("relationship_split/relation_trainidx.json", ["1", "99"], ["relation_trainidx.json", "image id 99"]),
        ("annotation_image_info.json", [{"id": 1, "imgW": 10}], ["annotation_image_info.json", "entry 0"]),
        ("relationship.json", "{not json", ["relationship.json", "not valid JSON", "line 1"]),
    ],
)
def test_pisc_malformed(tmp_path, file, data, texts):
    root = pisc_root(tmp_path)
    if isinstance(data, str):
        (root / file).write_text(data)
    else:
        dump(root / file, data)
    raises(lambda: R.read_pisc(root, "train", "relation"), *texts)


def test_pisc_missing_annotation(tmp_path):
    root = pisc_root(tmp_path)
    (root / "domain.json").unlink()
    raises(
        lambda: R.read_pisc(root, "train", "domain"), str(root / "domain.json"), "zenodo.org/record/1059155"
    )


# -------------------------------------------------------------------------------------------- HaGRID


def hagrid_root(root):
    ann = root / "hagrid_annotations" / "train"
    dump(ann / "peace.json", {
        "p1": {"bboxes": [[0.1, 0.1, 0.2, 0.3], [0.5, 0.5, 0.1, 0.1]], "labels": ["no_gesture", "peace"],
               "united_bbox": [None, None], "united_label": [None, None], "user_id": "u1"},
        "p2": {"bboxes": [[0.1, 0.1, 0.2, 0.3]], "labels": ["no_gesture"], "united_bbox": [None]},
        "p3": {"bboxes": [[0.9, 0.9, 0.2, 0.2]], "labels": ["peace"], "united_bbox": [None]},
        "p4": {"bboxes": [[0.1, 0.1, 0.2, 0.3]], "labels": ["peace"]},  # no image on disk
    })  # fmt: skip
    dump(ann / "hand_heart.json", {
        "h1": {"bboxes": [[0.2, 0.2, 0.1, 0.1], [0.3, 0.2, 0.1, 0.1]], "labels": ["hand_heart", "hand_heart"],
               "united_bbox": [[0.2, 0.2, 0.2, 0.1], [0.2, 0.2, 0.2, 0.1]], "united_label": ["hand_heart"]},
    })  # fmt: skip
    dump(ann / "no_gesture.json", {"n1": {"bboxes": [[0.3, 0.3, 0.1, 0.1]], "labels": ["no_gesture"]}})
    for target, name in [("peace", "p1"), ("peace", "p2"), ("peace", "p3"), ("hand_heart", "h1")]:
        jpg(root / "hagrid_dataset" / target / f"{name}.jpg", 16, 12)
    jpg(root / "hagrid_dataset/no_gesture/n1.jpg", 16, 12)
    return root


@pytest.fixture(scope="module")
def hagrid(tmp_path_factory):
    return hagrid_root(tmp_path_factory.mktemp("hagrid"))


def test_hagrid_official_label_rule_and_gesture_box(hagrid):
    s = R.read_hagrid(hagrid, "train")
    # targets interleave in the official order: hand_heart (8), peace (21), no_gesture (33)
    assert [(x.key, CLASSES["gesture"][x.label]) for x in s] == [
        ("train/hand_heart.json:h1", "hand_heart"),
        ("train/peace.json:p1", "peace"),
        ("train/no_gesture.json:n1", "no_gesture"),
        ("train/peace.json:p3", "peace"),
    ]
    np.testing.assert_allclose(s[0].boxes[0], (0.2, 0.2, 0.4, 0.3))  # the united box
    np.testing.assert_allclose(s[1].boxes[0], (0.5, 0.5, 0.6, 0.6))  # the first non-no_gesture hand
    np.testing.assert_allclose(s[3].boxes[0], (0.9, 0.9, 1.0, 1.0))  # clipped to the image
    assert s[2].label == 33 and s[0].size is None
    assert s[1].image == str(hagrid / "hagrid_dataset/peace/p1.jpg")
    assert s.dropped == {
        "images whose hands are all no_gesture (outside the no_gesture folder)": 1,
        "images missing on disk": 1,
    }
    assert [x.key for x in R.read_hagrid(hagrid, "train", limit=2)] == [x.key for x in s[:2]]


def test_hagrid_errors(tmp_path):
    root = hagrid_root(tmp_path)
    raises(lambda: R.read_hagrid(root, "val"), "hagrid_annotations/val", "hukenovs/hagrid")
    dump(
        root / "hagrid_annotations/train/peace.json", {"p1": {"bboxes": [[0, 0, 1, 1]], "labels": ["peacee"]}}
    )
    raises(lambda: R.read_hagrid(root, "train"), "peace.json", "image p1", "unknown hand label 'peacee'")
    dump(root / "hagrid_annotations/train/peace.json", {"p1": {"bboxes": [[0, 0, 1, 1]], "labels": []}})
    raises(lambda: R.read_hagrid(root, "train"), "peace.json", "image p1", "one entry per box")
    dump(root / "hagrid_annotations/train/like.json", {})
    raises(lambda: R.read_hagrid(root, "train"), "hagrid_dataset/like", "like.zip")
    dump(root / "hagrid_annotations/train/peaces.json", {})
    raises(lambda: R.read_hagrid(root, "train"), "unknown targets ['peaces']")


# ------------------------------------------------------------------------------------------- Ego4D LAM


def track(*rows):
    return [{"frame": f, "x": x, "y": y, "width": w, "height": h} for f, x, y, w, h in rows]


def lam_root(root):
    person1 = track(
        (0, 5, 5, 5, 5), (1, -2, 2, 10, 10), (4, 6, 2, 10, 10), (3, 6, 2, 0, 10)
    )  # 0: skip, w=0: skip
    clip = {
        "clip_uid": "c1",
        "persons": [
            {
                "person_id": "0",
                "tracking_paths": [{"track_id": "w", "track": track((1, 0, 0, 9, 9))}],
            },  # wearer
            {"person_id": "1", "tracking_paths": [{"track_id": "t1", "track": person1}]},
            {"person_id": "2", "tracking_paths": [{"track_id": "t2", "track": track((1, 35, 25, 10, 10))}]},
            {"person_id": "3", "tracking_paths": [{"track_id": "t3", "track": track((5, 1, 1, 5, 5))}]},
        ],
        "social_segments_looking": [
            {"person": "1", "start_frame": 2, "end_frame": 3},
            {"person": None, "start_frame": 1, "end_frame": 9},
            {"person": "2", "start_frame": 1, "end_frame": 1},
        ],
    }
    other = {  # tracks, but no looking annotation at all: its frames are dropped, counted
        "clip_uid": "c2",
        "persons": [
            {},
            {"person_id": "1", "tracking_paths": [{"track_id": "u", "track": track((1, 0, 0, 9, 9))}]},
        ],
        "social_segments_looking": [],
    }
    dump(root / "json/av_train.json", {"videos": [{"video_uid": "v", "clips": [clip, other]}]})
    write(root / "split/train.list", ["c1", "", "c2"])
    for f in (1, 2, 3, 4):
        jpg(root / f"video_imgs/c1/img_{f:05d}.jpg", 40, 30)
    jpg(root / "video_imgs/c2/img_00001.jpg", 40, 30)
    return root


@pytest.fixture(scope="module")
def lam(tmp_path_factory):
    return lam_root(tmp_path_factory.mktemp("lam"))


def test_lam_tracks_labels_and_crops(lam):
    s = R.read_lam(lam, "train", stride=1)
    assert [(x.key, x.label, x.crop) for x in s] == [
        ("c1/t1:frame 1", 0, (0, 2, 10, 12)),  # x clamped to 0 before x2 = x + w
        ("c1/t1:frame 2", 1, (2, 2, 12, 12)),  # interpolated between frames 1 and 4
        ("c1/t1:frame 3", 1, (4, 2, 14, 12)),
        ("c1/t1:frame 4", 0, (6, 2, 16, 12)),
        ("c1/t2:frame 1", 1, (35, 25, 40, 30)),  # clipped to the 40 x 30 frame
    ]
    assert s[1].image == str(lam / "video_imgs/c1/img_00002.jpg") and s[1].size == (10, 10)
    assert s[4].size == (5, 5) and s[0].task == "lam" and s[0].boxes == ()
    assert s.dropped == {"frames not extracted": 1, "frames of clips without social_segments_looking": 1}
    assert [x.key for x in R.read_lam(lam, "train", stride=2)] == [
        "c1/t1:frame 1",
        "c1/t1:frame 3",
        "c1/t2:frame 1",
    ]
    assert [x.key for x in R.read_lam(lam, "train")] == ["c1/t1:frame 1", "c1/t2:frame 1"]  # stride 13
    assert len(R.read_lam(lam, "train", stride=1, limit=3)) == 3


def test_lam_errors(tmp_path):
    root = lam_root(tmp_path)
    raises(lambda: R.read_lam(root, "test"), "hidden labels")
    raises(lambda: R.read_lam(root, "val"), "split/val.list", "social-interactions")
    raises(lambda: R.read_lam(root, "train", stride=0), "stride")
    write(root / "split/train.list", ["c1", "c9"])
    raises(lambda: R.read_lam(root, "train"), "train.list", "line 2", "clip c9 is not in av_train.json")
    write(root / "split/train.list", ["c1"])
    (root / "video_imgs/c1/img_00001.jpg").rename(root / "video_imgs/c1/frame.jpg")
    for f in (2, 3, 4):
        (root / f"video_imgs/c1/img_{f:05d}.jpg").unlink()
    raises(lambda: R.read_lam(root, "train"), "video_imgs/c1", "no img_%05d.jpg frames", "extract_frame.sh")
    (root / "video_imgs/c1").rename(root / "video_imgs/c0")
    raises(lambda: R.read_lam(root, "train"), "video_imgs/c1", "not found", "frames of clip c1")
    (root / "video_imgs/c0/frame.jpg").rename(root / "video_imgs/c0/img_00001.jpg")
    (root / "video_imgs/c0").rename(root / "video_imgs/c1")
    data = json.loads((root / "json/av_train.json").read_text())
    data["videos"][0]["clips"][0]["persons"][1]["tracking_paths"][0]["track"][1]["x"] = "left"
    dump(root / "json/av_train.json", data)
    raises(
        lambda: R.read_lam(root, "train"), "av_train.json", "persons[1].tracking_paths[0].track[1]", "'left'"
    )


# ------------------------------------------------------------------------------------------- AffectNet

AN_HEADER = (
    "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal"
)


def affectnet_root(root, rows):
    write(root / "Manually_Annotated_file_lists/training.csv", [AN_HEADER, *rows])
    jpg(root / "Manually_Annotated_Images/1/a.jpg", 50, 40)
    jpg(root / "Manually_Annotated_Images/2/b.jpg", 50, 40)
    return root


def test_affectnet_crops_labels_and_dropped_ids(tmp_path):
    root = affectnet_root(
        tmp_path,
        [
            '1/a.jpg,5,6,20,25,"1.0;2.0;3.0",7,-0.5,0.3',
            "2/b.jpg,0,0,10,10,1;2,9,0,0",  # Uncertain
            "2/b.jpg,0,0,10,10,1;2,10,0,0",  # No-Face
            "2/c.jpg,0,0,10,10,1;2,1,0,0",  # image not on disk
            "",
            "2/b.jpg,1,2,30,30,1;2,0,0.1,0.2",
        ],
    )
    s = R.read_affectnet(root, "train")
    assert [(x.key, x.label, x.crop, x.size) for x in s] == [
        ("training.csv:line 2", 7, (5, 6, 25, 31), (20, 25)),
        ("training.csv:line 7", 0, (1, 2, 31, 32), (30, 30)),
    ]
    assert CLASSES["emotion"][s[0].label] == "contempt" and s[0].image.endswith(
        "Manually_Annotated_Images/1/a.jpg"
    )
    assert s.dropped == {
        "expression 9 (Uncertain)": 1,
        "expression 10 (No-Face)": 1,
        "images missing on disk": 1,
    }
    assert len(R.read_affectnet(root, "train", limit=1)) == 1


@pytest.mark.parametrize(
    "row, texts",
    [
        ("1/a.jpg,5,6,20,25,1;2,11,0,0", ["expression 11 outside 0..10", "line 2"]),
        ("1/a.jpg,5,6,20,25,1;2,1,0", ["8 fields", "line 2"]),
        ("1/a.jpg,five,6,20,25,1;2,1,0,0", ["face_x", "'five'", "line 2"]),
        ("1/a.jpg,5,6,0,25,1;2,1,0,0", ["face box 0x25 is empty", "line 2"]),
    ],
)
def test_affectnet_malformed_rows(tmp_path, row, texts):
    raises(lambda: R.read_affectnet(affectnet_root(tmp_path, [row]), "train"), "training.csv", *texts)


def test_affectnet_header_split_and_missing_file(tmp_path):
    root = affectnet_root(tmp_path, [])
    write(root / "Manually_Annotated_file_lists/training.csv", ["subDirectory_filePath,face_x,expression"])
    raises(lambda: R.read_affectnet(root, "train"), "training.csv", "line 1", "face_y")
    raises(lambda: R.read_affectnet(root, "val"), "validation.csv", "mohammadmahoor.com")
    raises(lambda: R.read_affectnet(root, "test"), "unreleased")


# -------------------------------------------------------------------------------------------- dispatch


def test_read_dispatches_by_task(pisc, lam, gazefollow):
    assert [x.key for x in R.read("pisc_relation", pisc, "train")] == [
        x.key for x in R.read_pisc(pisc, "train", "relation")
    ]
    assert R.read("pisc_domain", pisc, "train")[0].task == "pisc_domain"
    assert len(R.read("lam", lam, "train", stride=1)) == 5
    assert R.read("gaze", gazefollow, R.EVAL_SPLIT["gaze"])[0].task == "gaze"
    assert set(R.EVAL_SPLIT) == set(CLASSES)
    raises(lambda: R.read("dance", pisc, "train"), "unknown task")
    raises(lambda: R.read("gaze", gazefollow, "train", limit=0), "limit")

"""The released data directory: loading, cross-checks, splits, and malformed directories."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from jaxbgs.data.dataset import load_human_data, read_captions, read_mapping, read_ratings
from jaxbgs.data.splits import make_split, validation_split
from jaxbgs.errors import InputError


def test_release_summary(human):
    # Data README: 49,484 trials, 215 participants, 2,358 trials repeat a video; 24,096 train / 368 test.
    s = human.summary()
    assert s["n_all_trials"] == 49_484
    assert s["n_all_trials_repeating_a_video"] == 2_358
    assert s["n_participants"] == 215
    assert (s["n_train_videos"], s["n_test_videos"]) == (200, 50)
    assert (s["n_train_trials"], s["n_test_trials"]) == (24_096, 368)
    assert not np.intersect1d(human.train_ids, human.test_ids).size


def test_split_from_raw_trials_reports_exclusions(human):
    # Reference §1.1: 451 test-only trials = 368 distinct + 83 with a repeated video; the rest cross.
    split = make_split("test", human.all_trials, human.test_ids)
    assert len(split.trials) == 368 and split.n_excluded_repeats == 83
    train = make_split("train", human.all_trials, human.train_ids)
    assert len(train.trials) == 24_096 and train.n_excluded_repeats == 1_527
    assert split.n_excluded_crossing == train.n_excluded_crossing == 23_410
    assert "83 excluded for repeating a video" in split.report()


def test_validation_split_by_video(human):
    train, val = validation_split(human.train, human.train_ids, fraction=0.2, seed=42)
    assert (len(train.ids), len(val.ids)) == (160, 40)
    assert not np.intersect1d(train.ids, val.ids).size
    # Every training trial is accounted for: kept on one side or counted as crossing.
    crossing = ~(human.train.within(train.ids) | human.train.within(val.ids))
    assert len(train.trials) + len(val.trials) + crossing.sum() == len(human.train)
    assert train.n_excluded_crossing == crossing.sum()
    again, _ = validation_split(human.train, human.train_ids, fraction=0.2, seed=42)
    np.testing.assert_array_equal(again.ids, train.ids)


def test_validation_split_by_judgment(human):
    train, val = validation_split(human.train, human.train_ids, by="judgment", seed=0)
    assert len(train.trials) + len(val.trials) == 24_096
    assert len(val.trials) == round(0.2 * 24_096)


def test_validation_split_bad_values(human):
    with pytest.raises(InputError, match=r"validation fraction must be in \(0, 1\), got 1.5"):
        validation_split(human.train, human.train_ids, fraction=1.5)
    with pytest.raises(InputError, match="unknown validation split 'participant'"):
        validation_split(human.train, human.train_ids, by="participant")


def test_captions_and_ratings(human):
    caps = human.captions
    assert len(caps) == 250 and all(caps[i] for i in range(250))
    assert caps[0][0].startswith("a man sits playing video games")  # caption_index 1 of video 0
    ratings, names = human.ratings()
    assert ratings.shape == (250, len(names)) and "valence" in names and "dominance" in names
    assert np.isfinite(ratings).all()


# --- malformed data directories --------------------------------------------------------------------
@pytest.fixture
def copy(tmp_path, data_dir):
    dst = tmp_path / "data"
    shutil.copytree(data_dir, dst)
    for p in dst.iterdir():
        p.chmod(0o644)
    return dst


def test_missing_file_in_directory(copy):
    (copy / "test_triplets.csv").unlink()
    with pytest.raises(InputError, match="test_triplets.csv not found in the data directory"):
        load_human_data(copy)


def test_train_test_overlap(copy):
    with open(copy / "test.csv", "a") as f:
        name = (copy / "train.csv").read_text().splitlines()[1]
        f.write(f"0,{name}\n")
    with pytest.raises(InputError, match=r"1 video\(s\) are in both train and test"):
        load_human_data(copy)


def test_test_trial_with_training_video(copy):
    lines = (copy / "test_triplets.csv").read_text().splitlines()
    cells = lines[3].split(",")
    cells[4] = "0"  # video 0 is a training video
    if cells[7] not in cells[4:7]:
        cells[7] = "0"
    lines[3] = ",".join(cells)
    (copy / "test_triplets.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(
        InputError, match=r"test_triplets.csv: line 4: trial .* uses videos outside the test set"
    ):
        load_human_data(copy)


def test_mapping_problems(tmp_path):
    p = tmp_path / "video_mapping.csv"
    p.write_text("index,video_name\n0,a.mp4\n2,b.mp4\n")
    with pytest.raises(InputError, match="line 3: index 2 where 1 was expected"):
        read_mapping(p)
    p.write_text("index,video_name\n0,a.mp4\n1,a.mp4\n")
    with pytest.raises(InputError, match=r"line 3: video 'a.mp4' listed twice \(also id 0\)"):
        read_mapping(p)


def test_caption_and_rating_problems(tmp_path):
    p = tmp_path / "captions.csv"
    p.write_text("video_name,caption_index,caption\na.mp4,1,two people talk\nz.mp4,1,hello\n")
    with pytest.raises(InputError, match=r"line 3: video 'z.mp4' is not in the mapping file"):
        read_captions(p, {"a.mp4": 0})
    p.write_text("video_name,caption_index,caption\na.mp4,1,  \n")
    with pytest.raises(InputError, match="line 2: empty caption"):
        read_captions(p, {"a.mp4": 0})
    r = tmp_path / "annotations.csv"
    r.write_text("video_name,rating-valence\na.mp4,\n")
    with pytest.raises(InputError, match="line 2: column 'rating-valence' holds ''"):
        read_ratings(r, {"a.mp4": 0})
    r.write_text("video_name,rating-valence\na.mp4,0.2\nb.mp4,0.1\na.mp4,0.9\n")
    with pytest.raises(InputError, match="line 2: video 'a.mp4' is rated in more than one row"):
        read_ratings(r, {"a.mp4": 0, "b.mp4": 1})
    p.write_text("video_name,caption_index,caption\na.mp4,1,one\na.mp4,2,two\na.mp4,1,three\n")
    with pytest.raises(InputError, match="line 4: video 'a.mp4' has caption_index 1 twice"):
        read_captions(p, {"a.mp4": 0})


def test_missing_directory(tmp_path):
    with pytest.raises(InputError, match="data directory not found"):
        load_human_data(tmp_path / "absent")

"""Reading odd-one-out trials: formats, toy cases, and every malformed input naming file, line and fix."""

from __future__ import annotations

import numpy as np
import pytest

from jaxbgs.data.judgments import Trials, read_trials, write_trials
from jaxbgs.errors import InputError

HEADER = "participation,stim1_name,stim2_name,stim3_name,choice,response_time"


def write(tmp_path, text, name="trials.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_released_format(tmp_path):
    p = write(tmp_path, f"{HEADER}\nann,0,1,2,2,1.5\nbob,3,1,0,0,2.0\n")
    t = read_trials(p)
    np.testing.assert_array_equal(t.items, [[0, 1, 2], [3, 1, 0]])
    np.testing.assert_array_equal(t.odd, [2, 0])
    assert t.participant.tolist() == ["ann", "bob"]
    np.testing.assert_allclose(t.response_time, [1.5, 2.0])
    # The kept pair is the two non-odd videos in shown order: (0, 1) and (3, 1).
    np.testing.assert_array_equal(t.kept_pair(), [[0, 1], [3, 1]])


def test_generic_format_csv_and_parquet(tmp_path):
    p = write(tmp_path, "i,j,k,odd\n4,5,6,5\n6,4,5,6.0\n")
    t = read_trials(p)
    np.testing.assert_array_equal(t.items, [[4, 5, 6], [6, 4, 5]])
    np.testing.assert_array_equal(t.odd, [5, 6])
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"i": [4, 6], "j": [5, 4], "k": [6, 5], "odd": [5, 6]}), tmp_path / "t.parquet")
    tp = read_trials(tmp_path / "t.parquet")
    np.testing.assert_array_equal(tp.items, t.items)


def test_write_round_trip(tmp_path):
    t = Trials([[0, 1, 2], [2, 3, 1]], [1, 3])
    write_trials(t, tmp_path / "out.csv")
    back = read_trials(tmp_path / "out.csv")
    np.testing.assert_array_equal(back.items, t.items)
    np.testing.assert_array_equal(back.odd, t.odd)
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]  # no temp file left


def test_repeats_reported_when_allowed(tmp_path):
    p = write(tmp_path, f"{HEADER}\na,0,0,2,2,1\na,0,1,2,1,1\n")
    t = read_trials(p, allow_repeats=True)
    np.testing.assert_array_equal(t.has_repeat, [True, False])


def test_within_and_select():
    t = Trials([[0, 1, 2], [0, 1, 5]], [0, 5])
    np.testing.assert_array_equal(t.within([0, 1, 2, 3]), [True, False])
    assert len(t.select(t.within([0, 1, 2]))) == 1


# --- malformed input: each error names the file, the line and what to do -------------------------
BAD = [
    (
        "missing_column",
        "participation,stim1_name,stim2_name,stim3_name\na,0,1,2\n",
        {},
        r"missing column\(s\) choice",
    ),
    ("ragged_row", f"{HEADER}\na,0,1,2,2\n", {}, r"line 2: 5 fields where the header has 6"),
    (
        "blank_value",
        f"{HEADER}\na,0,1,2,2,1\na,0,,2,2,1\n",
        {},
        r"line 3: missing value in column 'stim2_name'",
    ),
    (
        "text_id",
        f"{HEADER}\na,0,x7,2,2,1\n",
        {},
        r"line 2: column 'stim2_name' holds 'x7', which is not an integer",
    ),
    ("fractional_id", f"{HEADER}\na,0,1.5,2,2,1\n", {}, r"holds '1.5', which is not an integer"),
    (
        "choice_not_shown",
        f"{HEADER}\na,0,1,2,2,1\na,0,1,2,9,1\n",
        {},
        r"line 3: 'choice' is 9, not one of the three",
    ),
    (
        "unknown_id",
        f"{HEADER}\na,0,1,300,1,1\n",
        {"known_ids": range(250)},
        r"line 2: unknown video id\(s\) \[300\]",
    ),
    (
        "repeat",
        f"{HEADER}\na,0,1,2,1,1\na,4,4,2,2,1\na,5,2,5,2,1\n",
        {},
        r"line 3: the three videos are not distinct: \[4, 4, 2\] \(2 rows in all\)",
    ),
    ("negative_id", f"{HEADER}\na,-1,1,2,1,1\n", {}, r"line 2: negative video id"),
    ("bad_response_time", f"{HEADER}\na,0,1,2,1,fast\n", {}, r"line 2: column 'response_time' holds 'fast'"),
    ("header_only", f"{HEADER}\n", {}, r"no trials in the file"),
    ("empty_file", "", {}, r"the file is empty"),
    ("bad_generic", "i,j,k,odd\n1,2,3,4\n", {}, r"'odd' is 4, not one of the three videos \[1, 2, 3\]"),
    (
        "catch_trial",
        "stim1_name,stim2_name,stim3_name,choice,catch_trial_flag\n0,1,2,1,False\n0,1,3,3,True\n",
        {},
        r"line 3: a catch trial \(catch_trial_flag True\)",
    ),
]


@pytest.mark.parametrize("name,text,kw,message", BAD, ids=[b[0] for b in BAD])
def test_malformed_trials(tmp_path, name, text, kw, message):
    p = write(tmp_path, text)
    with pytest.raises(InputError, match=message) as e:
        read_trials(p, **kw)
    assert str(p) in str(e.value) and "Fix:" in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"nope.csv: file not found"):
        read_trials(tmp_path / "nope.csv")


def test_not_utf8(tmp_path):
    p = tmp_path / "t.csv"
    p.write_bytes(b"i,j,k,odd\n\xff\xfe,1,2,1\n")
    with pytest.raises(InputError, match="not UTF-8 text"):
        read_trials(p)


def test_corrupt_parquet(tmp_path):
    pytest.importorskip("pyarrow")
    p = tmp_path / "t.parquet"
    p.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(InputError, match="not a readable Parquet file"):
        read_trials(p)


def test_unknown_format(tmp_path):
    p = write(tmp_path, "i,j,k,odd\n0,1,2,1\n")
    with pytest.raises(InputError, match="unknown judgments format 'tsv'"):
        read_trials(p, fmt="tsv")


def test_in_memory_odd_must_be_shown():
    with pytest.raises(InputError, match=r"the odd one 7 is not among \[0, 1, 2\]"):
        Trials([[0, 1, 2]], [7])

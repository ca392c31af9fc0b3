"""CSV reading: what spreadsheets and editors produce either reads right or is named, never misread."""

import pytest

from jaxbgs.data.tables import read_table
from jaxbgs.errors import InputError


def test_byte_order_mark_is_not_part_of_the_first_column(tmp_path):
    p = tmp_path / "map.csv"
    p.write_bytes("index,video_name\n0,a.mp4\n".encode("utf-8-sig"))
    t = read_table(p)
    assert list(t.columns) == ["index", "video_name"] and t.columns["index"] == ["0"]


def test_repeated_column_names_are_named(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("stim1_name,stim2_name,stim1_name\na,b,c\n")
    with pytest.raises(InputError, match=r"t\.csv: line 1: column name\(s\) \['stim1_name'\] appear more"):
        read_table(p)


@pytest.mark.parametrize("sep", [";", "\t"])
def test_another_separator_is_named(tmp_path, sep):
    p = tmp_path / "t.csv"
    p.write_text(sep.join(["i", "j", "k", "odd"]) + "\n" + sep.join("1203") + "\n")
    with pytest.raises(InputError, match="single column .*separate the columns with commas"):
        read_table(p)


def test_rows_are_located_by_the_line_they_start_on(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text('video_name,caption\na.mp4,"two\nlines"\nb.mp4,one\nc.mp4\n')
    with pytest.raises(InputError, match="line 5: 1 fields where the header has 2"):
        read_table(p)
    p.write_text('video_name,caption\na.mp4,"two\nlines"\nb.mp4,one\n')
    t = read_table(p)
    assert [t.where(0), t.where(1)] == ["line 2", "line 4"]

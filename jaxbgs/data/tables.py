"""Small tabular readers (CSV and Parquet) that keep row numbers, so every error can name its line."""

from __future__ import annotations

import csv
import dataclasses
import os
from pathlib import Path

import numpy as np

from jaxbgs.errors import InputError


@dataclasses.dataclass(frozen=True)
class Table:
    """Columns as lists of raw cell values; `where(i)` says how a user finds data row i in the file."""

    path: Path
    columns: dict[str, list]
    n_rows: int
    parquet: bool
    lines: tuple[int, ...] = ()  # CSV: the line (as an editor counts) each data row starts on

    def where(self, i: int) -> str:
        if self.parquet:
            return f"row {i + 1}"
        return f"line {self.lines[i] if self.lines else i + 2}"  # the header is line 1

    def require(self, names: tuple[str, ...], what: str) -> None:
        missing = [n for n in names if n not in self.columns]
        if missing:
            raise InputError(
                f"missing column(s) {', '.join(missing)} for {what}; "
                f"found {', '.join(self.columns) or 'none'}",
                file=self.path,
                fix=f"the file needs a header with {', '.join(names)}",
            )


def read_table(path: str | os.PathLike) -> Table:
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", file=path, fix="check the path (and the --data directory)")
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            import pyarrow.parquet as pq
        except ImportError as e:
            raise InputError("reading Parquet needs pyarrow", file=path, fix="pip install pyarrow") from e
        try:
            data = pq.read_table(path).to_pydict()
        except Exception as e:  # pyarrow raises several types for a damaged file
            raise InputError(f"not a readable Parquet file ({e})", file=path, fix="re-export the file") from e
        n = len(next(iter(data.values()))) if data else 0
        return Table(path, {k.strip(): v for k, v in data.items()}, n, parquet=True)
    rows, starts = [], []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: a spreadsheet's byte-order mark
            reader = csv.reader(f)
            line = 1
            for row in reader:
                rows.append(row)
                starts.append(line)
                line = reader.line_num + 1  # a quoted cell may span lines
    except UnicodeDecodeError as e:
        raise InputError(f"not UTF-8 text ({e})", file=path, fix="save the file as UTF-8 CSV") from e
    if not rows:
        raise InputError("the file is empty", file=path, fix="it needs a header line and at least one row")
    header = [h.strip() for h in rows[0]]
    if len(header) == 1 and any(sep in header[0] for sep in ";\t|"):
        raise InputError(
            f"the header is a single column {header[0]!r}", file=path, where="line 1",
            fix="separate the columns with commas (this file seems to use another separator)",
        )  # fmt: skip
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise InputError(
            f"column name(s) {repeated} appear more than once in the header", file=path, where="line 1",
            fix="give every column its own name",
        )  # fmt: skip
    body = rows[1:]
    for i, r in enumerate(body):
        if len(r) != len(header):
            raise InputError(
                f"{len(r)} fields where the header has {len(header)}",
                file=path,
                where=f"line {starts[i + 1]}",
                fix="every row needs one value per column (quote fields that contain commas)",
            )
    cols = {h: [r[c] for r in body] for c, h in enumerate(header)}
    return Table(path, cols, len(body), parquet=False, lines=tuple(starts[1:]))


def _is_missing(v) -> bool:
    return v is None or (isinstance(v, str) and v.strip() == "") or (isinstance(v, float) and np.isnan(v))


def int_column(table: Table, name: str, *, what: str = "a video id") -> np.ndarray:
    """Parse a column of integer ids; "12" and "12.0" are fine, "12.5", "abc" and blanks are errors."""
    values = table.columns[name]
    out = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        if _is_missing(v):
            raise InputError(
                f"missing value in column {name!r}",
                file=table.path,
                where=table.where(i),
                fix="fill in the value or delete the row",
            )
        try:
            x = float(v)
        except (TypeError, ValueError):
            x = float("nan")
        if not np.isfinite(x) or x != int(x):
            raise InputError(
                f"column {name!r} holds {v!r}, which is not an integer ({what})",
                file=table.path,
                where=table.where(i),
                fix=f"use integer ids in {name!r}",
            )
        out[i] = int(x)
    return out


def float_column(table: Table, name: str) -> np.ndarray:
    values = table.columns[name]
    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            raise InputError(
                f"column {name!r} holds {v!r}, which is not a number",
                file=table.path,
                where=table.where(i),
                fix=f"use numbers in {name!r} (blank cells are not allowed)",
            ) from None
        if not np.isfinite(out[i]):
            raise InputError(
                f"missing or non-finite value in column {name!r}",
                file=table.path,
                where=table.where(i),
                fix="fill in the value or delete the row",
            )
    return out

"""The row id rule of every engine: with no ``--id-column``, a row's id (``_row``) is its position
in the whole input, the files read in sorted order (file start + index in the file).

``kappa run`` (local and Dask) counts positions while it reads. A Spark job cannot: its tasks
read pieces of files in any order. It counts the rows of every file (and of every split of a
text file) once, from the ``_metadata`` of Spark's file source. For Parquet, Spark adds the
file's start to the row's index in its file itself; for text formats the task that scores
a batch numbers the rows of each split (:meth:`Positions.assign`). Either way outputs of
two engines join on ``_row`` and a re-run overwrites the same rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import unquote

import numpy as np
import pyarrow as pa

from kappa.errors import KappaError

FILE_COLUMN = "_kappa_file"  # the file a row was read from
INDEX_COLUMN = "_kappa_index"  # its index in that file (Parquet; used inside Spark only)
SPLIT_COLUMN = "_kappa_split"  # the byte offset of the split it was read in (text formats)


@dataclass(frozen=True)
class Positions:
    """Where each file, and each split of a text file, starts in the whole input."""

    starts: Mapping[tuple[str, int], int]  # (file, split start or -1 for the whole file) -> first row

    @classmethod
    def from_counts(cls, counts: Iterable[tuple[str, int, int]], by_split: bool) -> Positions:
        """From (file, split start, rows) of every split; files in the order ``kappa run`` reads them
        (sorted by path: Spark's ``file:`` URIs are compared as the paths they encode)."""
        ordered = sorted(counts, key=lambda c: (unquote(c[0]), c[1]))
        starts: dict[tuple[str, int], int] = {}
        position = 0
        for file, split, rows in ordered:
            if (file, -1) not in starts:
                starts[(file, -1)] = position
            if by_split:
                starts[(file, split)] = position
            position += rows
        return cls(starts)

    def start(self, file: str, split: int) -> int:
        try:
            return self.starts[(file, split)]
        except KeyError:
            raise KappaError(
                f"{file} (split at byte {split}) was not seen when the job counted its input's rows: "
                "the input changed while the job ran; run the job again"
            ) from None

    def assign(self, batches: Iterator[pa.RecordBatch]) -> Iterator[tuple[pa.Array, pa.RecordBatch]]:
        """For every batch of one task of a text-format input, in order: its rows' ids and the batch
        without the helper columns. Rows of a split arrive in one task, contiguous and in file order."""
        seen: dict[tuple[str, int], int] = {}  # rows of each split this task has passed
        for batch in batches:
            names = batch.schema.names
            files = batch.column(names.index(FILE_COLUMN)).dictionary_encode()
            paths = files.dictionary.to_pylist()
            codes = files.indices.to_numpy(zero_copy_only=False).astype(np.int64)
            splits = batch.column(names.index(SPLIT_COLUMN)).to_numpy(zero_copy_only=False)
            ids = np.empty(batch.num_rows, dtype=np.int64)
            edges = np.flatnonzero((np.diff(codes) != 0) | (np.diff(splits) != 0)) + 1
            for start, end in zip([0, *edges], [*edges, batch.num_rows], strict=True):
                if start == end:
                    continue
                key = (paths[codes[start]], int(splits[start]))
                done = seen.get(key, 0)
                ids[start:end] = self.start(*key) + done + np.arange(end - start)
                seen[key] = done + end - start
            keep = [i for i, n in enumerate(names) if n not in (FILE_COLUMN, SPLIT_COLUMN)]
            yield pa.array(ids), batch.select(keep)

"""Which reader a file's name calls for (file_kind): .csv and .tsv (either maybe .gz, .bz2
or .zst), .parquet, .npz.
"""

from __future__ import annotations

from pathlib import Path

TABLE_SUFFIXES = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".npz": "npz"}
COMPRESSED = (".gz", ".bz2", ".zst")  # what pyarrow decompresses by a file's name (.csv.gz, .tsv.zst, ...)


def file_kind(path) -> str:
    """"csv" (.csv, .tsv, either compressed), "parquet", "npz", or the file's suffix."""
    suffix = _table_suffix(path)
    return TABLE_SUFFIXES.get(suffix, suffix)


def _table_suffix(path) -> str:
    """A file's suffix under its compression's (.csv for x.csv.gz; .gz for x.gz)."""
    suffixes = Path(path).suffixes
    if len(suffixes) > 1 and suffixes[-1] in COMPRESSED:
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""

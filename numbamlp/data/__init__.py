"""Data sources, splits and standardisation.

Symbols: N rows, D features.  X (N, D) float, y (N,) labels.

Sources: ``builtin:digits`` (default), ``builtin:iris``, ``builtin:wine``,
``builtin:breast_cancer`` (scikit-learn's bundled copies, no network), ``builtin:spiral``
(the classic 3-class spiral, generated from the seed), and files:

- ``.csv``: header optional; the label column is the last unless named or numbered.  Read
  by pyarrow's streaming CSV reader, block by block into one preallocated array; a file
  pyarrow refuses (or any file, without pyarrow) is read by the csv module, whose messages
  name the row, column and value of a bad cell.
- ``.parquet``: feature columns of numbers (or booleans); the label column as for CSV.
- ``.npz``: arrays ``X``, ``y`` and optionally ``X_test``, ``y_test`` (never unpickled);
  X is streamed out of the archive into the array it ends up in.
- a folder holding ``X.npy`` and ``y.npy`` (optionally ``X_test.npy``, ``y_test.npy``):
  X is memory-mapped, read through the map, never loaded whole.

Labels may be integers or class names (strings); features are finite numbers, or, in a CSV
or Parquet table, text (categories) and missing cells, which numbamlp.encoding encodes.
Every problem is a DataError whose message names the file and, for CSV, the row and column.

Memory (what ``prepare`` costs above the arrays it returns): a reader fills one
preallocated (N, D) array of the training dtype, column by column or block by block;
``split_arrays`` partitions those rows in place into [train | validation | test] (copying
out only the held-out rows) and standardises them in place, chunk by chunk, so the splits
are views of one buffer.  Arrays it was given (or a memory map) are never written: they
are gathered by index into one new buffer instead.

The modules, each importing only those above it in this list:

- dataset      the Dataset a reader returns, DataNote, helpers every reader shares
- memory       allocating (and growing) the (N, D) array a reader fills
- formats      which reader a file's name calls for (file_kind)
- columns      a CSV or Parquet file's label and feature columns, the labels' values
- checks       checks at the boundary (arrays, labels, test data against training)
- builtin      the built-in data sets
- numpy_files  .npz archives and folders of .npy files
- csv_files    CSV files: dialect, header, pyarrow's reader and the csv module's
- parquet      Parquet files
- loading      load_dataset (any source → a checked Dataset), feature_names
- tables       a CSV or Parquet table's raw columns by their roles (read_table), for
               numbamlp.encoding's TableEncoder: text, missing cells, identifiers
- prediction   reading data for a trained model (read_features, header_for_model, ...)
- splits       held-out rows and split_arrays (one buffer, standardised in place)
- preparation  prepare, prepare_for: a config's data settings → the splits

Under them, outside this package: numbamlp.arrays (DataError, the finiteness checks, the
chunked passes, each feature's dtype) and numbamlp.transforms (Standardizer), which the
model imports without importing the readers.  Names with a leading underscore are shared
between this package's modules, not part of its interface; a setting to change in a test
(CHUNK_BYTES, CSV_BLOCK_BYTES, ...) is changed in the module that defines it.
"""

from numbamlp.arrays import (DataError, all_finite, array_dtypes, check_feature_dtypes, check_finite, column_dtypes,
                             dtype_kind)
from numbamlp.data.builtin import BUILTIN_SETS, REGRESSION_SETS, spiral
from numbamlp.data.checks import (CLASS_ROWS_AT_LEAST, MANY_CLASSES, check_arrays, check_classes_are_classes,
                                  check_feature_count, check_header_applies, check_label_column_applies,
                                  check_like_training)
from numbamlp.data.columns import FILL_OR_DROP, feature_columns
from numbamlp.data.csv_files import DELIMITERS, CsvDialect, csv_dialect
from numbamlp.data.csv_files import _read_csv_arrow  # noqa: F401 (tests call it)
from numbamlp.data.dataset import DataNote, Dataset
from numbamlp.data.formats import COMPRESSED, TABLE_SUFFIXES, file_kind
from numbamlp.encoding import MISSING_CELLS
from numbamlp.data.loading import feature_names, load_dataset
from numbamlp.data.memory import allocate_features
from numbamlp.data.numpy_files import NPY_FOLDER_FILES
from numbamlp.data.prediction import (evaluation_label, header_for_model, read_columns, read_features,
                                      read_table_for_model)
from numbamlp.data.tables import ColumnRoles, RawTable, read_table
from numbamlp.data.preparation import (changed_data_file, data_files, data_seed, prepare, prepare_for, reads_as_table,
                                       split_key)
from numbamlp.data.splits import Splits, holdout_split, shuffle_split, split_arrays, stratified_split
from numbamlp.transforms import Standardizer

__all__ = [
    "BUILTIN_SETS", "CLASS_ROWS_AT_LEAST", "ColumnRoles", "RawTable", "read_table", "read_table_for_model",
    "reads_as_table", "COMPRESSED", "CsvDialect", "DELIMITERS", "DataError", "DataNote",
    "Dataset", "FILL_OR_DROP", "MANY_CLASSES", "MISSING_CELLS", "NPY_FOLDER_FILES", "REGRESSION_SETS", "Splits",
    "Standardizer", "TABLE_SUFFIXES", "all_finite", "allocate_features", "array_dtypes", "changed_data_file",
    "check_arrays", "check_classes_are_classes", "check_feature_count", "check_feature_dtypes", "check_finite",
    "check_header_applies", "check_label_column_applies", "check_like_training", "column_dtypes", "csv_dialect",
    "data_files", "data_seed", "dtype_kind", "evaluation_label", "feature_columns", "feature_names", "file_kind",
    "header_for_model", "holdout_split", "load_dataset", "prepare", "prepare_for", "read_columns", "read_features",
    "shuffle_split", "spiral", "split_arrays", "split_key", "stratified_split",
]

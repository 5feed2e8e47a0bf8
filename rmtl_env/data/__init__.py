"""Data layer: raw loaders, synthetic twins, the processed-dataset cache and the catalog.

Everything downstream reads a :class:`SessionDataset` from :func:`load_dataset`; nothing here
imports torch or any model.
"""

from rmtl_env.data.catalog import CATALOG, DEFAULT_DATASET, cache_root, load_dataset
from rmtl_env.data.custom import ColumnRoles
from rmtl_env.data.dataset import SPLITS, SessionDataset, SplitData, label_column, true_prob_column
from rmtl_env.data.errors import DataFormatError, MissingRawFilesError
from rmtl_env.data.processing import ProcessingConfig
from rmtl_env.data.stream import StreamedDataset, StreamedSplit

__all__ = [
    "CATALOG",
    "DEFAULT_DATASET",
    "SPLITS",
    "ColumnRoles",
    "DataFormatError",
    "MissingRawFilesError",
    "ProcessingConfig",
    "SessionDataset",
    "SplitData",
    "StreamedDataset",
    "StreamedSplit",
    "cache_root",
    "label_column",
    "load_dataset",
    "true_prob_column",
]

"""Datasets: gulp storage (write + read), EPIC ingest, frame sampling."""

from core.data.gulp import (
    FORMAT_VERSION,
    GulpClipDataset,
    GulpWriteReport,
    SegmentToWrite,
    write_dataset_info,
    write_gulp,
)
from core.data.sampling import random_ordered_indices, segment_centre_indices

__all__ = [
    "FORMAT_VERSION",
    "GulpClipDataset",
    "GulpWriteReport",
    "SegmentToWrite",
    "random_ordered_indices",
    "segment_centre_indices",
    "write_dataset_info",
    "write_gulp",
]

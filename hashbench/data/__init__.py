"""Data in: datasets and protocols (splits), image stores and the device-side transform."""

from hashbench.data.datasets import HashingDataset, get_dataset, load_dataset
from hashbench.data.images import ImageTransform, iterate_batches
from hashbench.data.protocols import Split

__all__ = ["HashingDataset", "ImageTransform", "Split", "get_dataset", "iterate_batches", "load_dataset"]

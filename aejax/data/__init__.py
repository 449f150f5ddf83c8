"""Datasets by name: ``DATASETS[name].builder(cfg) -> Dataset``.

Importing the modules below registers them; a new dataset is a function decorated with
``@DATASETS.register(name, schema)`` plus a ``conf/dataset/<name>.yaml``.
"""
from aejax.data.base import Dataset
from aejax.data.registry import DATASETS, load_dataset
from aejax.data import array, digits, synthetic, tfds_source  # noqa: F401  (registration)
from aejax.data.array import as_dataset, load_path

__all__ = ["DATASETS", "Dataset", "as_dataset", "load_dataset", "load_path"]

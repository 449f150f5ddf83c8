"""Datasets by name: ``DATASETS[name].builder(cfg) -> Dataset``.

Importing the modules below registers them; a new dataset is a function decorated with
``@DATASETS.register(name, schema)`` plus a ``conf/dataset/<name>.yaml``.
"""
from aejax.data.base import Dataset
from aejax.data.registry import DATASETS, load_dataset
from aejax.data import digits, synthetic, tfds_source  # noqa: F401  (registration)

__all__ = ["DATASETS", "Dataset", "load_dataset"]

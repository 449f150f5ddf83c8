"""aejax: autoencoder experiments in JAX/Flax, composed from Hydra configs.

From Python: ``aejax.train([...overrides])`` runs what ``aejax-train`` runs and returns the run
(summary, run directory, trained model, history); ``aejax.compose([...])`` returns the validated
config. ``aejax.Autoencoder`` and ``aejax.Dataset`` are the contracts for bringing one's own
networks and data. The package is one stack: ``cli`` -> ``sweep`` -> ``experiment`` -> ``assemble``
(the config becomes objects) -> ``training``, over ``data``, ``models``, ``variants``,
``analysis``, ``tracking`` and ``rundir`` (the run directory's files). See docs/extending.md.
"""

__version__ = "0.1.0"

_LAZY = {  # imported on first use: `import aejax` stays light (aejax-explore imports no JAX)
    "train": ("aejax.api", "train"),
    "compose": ("aejax.api", "compose"),
    "Result": ("aejax.api", "Result"),
    "Autoencoder": ("aejax.models", "Autoencoder"),
    "Dataset": ("aejax.data", "Dataset"),
    "Parts": ("aejax.training.parts", "Parts"),
    "ConfigError": ("aejax.errors", "ConfigError"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'aejax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = ["__version__", *_LAZY]

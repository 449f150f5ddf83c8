"""aejax: autoencoder experiments in JAX/Flax, composed from Hydra configs.

Layout: ``data`` (datasets), ``models`` (encoders, decoders, the autoencoder), ``variants``
(training objectives), ``training`` (state, compiled step and epoch, the loop), ``tracking``
(run directory, W&B, progress); ``config`` validates, ``experiment`` runs one job, ``cli`` is
the Hydra entry point.
"""

__version__ = "0.1.0"

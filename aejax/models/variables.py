"""Kinds of model variables that the training core treats specially, decided from the built model.

- ``UnitNorm``: a parameter ``[units, values]`` whose rows are kept at unit norm (a dictionary's
  decoder directions). ``aejax.training.constraints`` projects their gradients and renormalises
  them after every update, around whatever optimizer the run uses.
- ``Statistic``: model state that the forward pass updates in training, not a gradient (dead-latent
  counters, a learned inference threshold, a codebook's EMA). It is carried in
  ``TrainState.extra``, checkpointed and vmapped with the parameters.
"""
from __future__ import annotations

from flax import nnx


class UnitNorm(nnx.Param):
    """A parameter whose rows have unit L2 norm after every optimizer step."""


class Statistic(nnx.Variable):
    """Model state updated by the forward pass in training (not by the optimizer)."""

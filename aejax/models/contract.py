"""The contract between networks and the rest of aejax.

An *encoder* maps a batch of examples ``[B, *example_shape]`` to features ``[B, encoder.features]``.
A *decoder* maps codes ``[B, latent_dim]`` to logits ``[B, *example_shape]`` (before the output
activation). The bottleneck itself, the linear map from features to the code, belongs to the
``Autoencoder``, so any encoder pairs with any decoder, and variants that need a different
bottleneck (a Gaussian head for a VAE) change it without touching the networks.

Builders are registered as ``ENCODERS.register(name, schema)`` with the signature
``build(cfg, example_shape, rngs) -> Encoder`` and ``DECODERS.register(name, schema)`` with
``build(cfg, latent_dim, example_shape, encoder, bottleneck, rngs) -> Decoder``. For mixed
precision (``model.dtype`` other than float32) builders also get ``dtype=``, the computation dtype
(e.g. ``jnp.bfloat16``): layers compute in it and keep float32 parameters (Flax's ``dtype`` and
``param_dtype``); outputs may be in ``dtype``, the ``Autoencoder`` returns float32 codes and logits. A decoder gets
the built encoder and bottleneck so it can mirror the encoder's widths or share its weights
(tied decoders); most decoders use neither. Builders raise ``ConfigError`` for shapes that do
not fit, and ``aejax.experiment`` builds the model abstractly before anything is compiled.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
from flax import nnx

from aejax.errors import ConfigError
from aejax.registry import Registry

ENCODERS: Registry[Callable[..., nnx.Module]] = Registry("encoder")
DECODERS: Registry[Callable[..., nnx.Module]] = Registry("decoder")

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "gelu": jax.nn.gelu,
    "silu": jax.nn.silu,
    "elu": jax.nn.elu,
    "leaky_relu": jax.nn.leaky_relu,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "identity": lambda x: x,
}


DTYPES = {"float32": None, "bfloat16": jnp.bfloat16}  # model.dtype -> computation dtype (None: float32)
Dtype = Optional[Any]  # a computation dtype for layers, None for float32


def activation(name: str, key: str) -> Callable[[jax.Array], jax.Array]:
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ConfigError(key, f"unknown activation {name!r}; known: {', '.join(ACTIVATIONS)}") from None


def forward_mode(model: nnx.Module) -> bool:
    """Whether forward-mode autodiff (``jax.jvp``) goes through a network: not when a layer in it
    says ``forward_mode = False`` (the CPU matmul convolutions, whose gradients are written out
    for reverse mode only). Terms that need Jacobian-vector products ask this of the built model."""
    return not any(getattr(node, "forward_mode", True) is False for _, node in nnx.iter_graph(model))

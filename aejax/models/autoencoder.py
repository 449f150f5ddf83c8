"""The autoencoder: encoder -> bottleneck (the code) -> decoder -> output activation.

The bottleneck is a linear map from the encoder's features to the code. With the ``gaussian``
head (VAEs) it outputs a mean and a log-variance per latent unit; ``encode`` then returns the
mean, so latent plots and evaluations see the same deterministic code for every variant.

With mixed precision the networks compute in bfloat16 (``model.dtype``); the codes and the
decoder's logits are returned in float32, so sampling, losses and regularizers are float32.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

OUTPUTS = ("sigmoid", "identity")
HEADS = ("deterministic", "gaussian")


class Coding:
    """What every model of the contract derives from its ``features``, ``code_params``,
    ``decode_logits`` and ``output``: encode, activate, decode, and the round trip."""

    def encode(self, x: jax.Array) -> jax.Array:
        return self.code_params(self.features(x))[0]

    def activate(self, logits: jax.Array) -> jax.Array:
        return jax.nn.sigmoid(logits) if self.output == "sigmoid" else logits

    def decode(self, z: jax.Array) -> jax.Array:
        return self.activate(self.decode_logits(z))

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.decode(self.encode(x))


class Autoencoder(Coding, nnx.Module):
    def __init__(self, encoder: nnx.Module, bottleneck: nnx.Linear, decoder: nnx.Module, latent_dim: int,
                 head: str, output: str):
        if output not in OUTPUTS or head not in HEADS:
            raise ValueError(f"output must be one of {OUTPUTS} and head one of {HEADS}; got {output!r}, {head!r}")
        self.encoder = encoder
        self.bottleneck = bottleneck
        self.decoder = decoder
        self.latent_dim = latent_dim
        self.head = head
        self.output = output

    @classmethod
    def around(cls, encoder: nnx.Module, decoder: nnx.Module, latent_dim: int, *, rngs: nnx.Rngs,
               head: str = "deterministic", output: str = "sigmoid") -> "Autoencoder":
        """An autoencoder around one's own networks: the encoder maps ``[B, ...]`` to
        ``[B, encoder.features]``, the decoder ``[B, latent_dim]`` to logits shaped like the input;
        the bottleneck (a linear map; mean and log-variance for ``head="gaussian"``) is added here."""
        width = 2 * latent_dim if head == "gaussian" else latent_dim
        return cls(encoder, nnx.Linear(encoder.features, width, rngs=rngs), decoder, latent_dim, head, output)

    def code_layout(self) -> dict[tuple[str, ...], int]:
        """Parameters whose last axis is made of blocks of ``latent_dim`` values, by their path in
        ``nnx.state(model)``, and how many blocks: a Gaussian head's bottleneck is the mean's units
        then the log-variance's (2). A batched sweep pads each block to the group's largest code
        (``aejax.batching.members``); every other parameter that sizes with the code (the
        decoder's input rows) is one block, padded at its end."""
        return {("bottleneck", "kernel"): 2, ("bottleneck", "bias"): 2} if self.head == "gaussian" else {}

    def features(self, x: jax.Array) -> jax.Array:
        """The encoder's output: the last hidden activations before the bottleneck."""
        return self.encoder(x)

    def code_params(self, h: jax.Array) -> tuple[jax.Array, jax.Array | None]:
        """``(mean, log_variance)`` from features; the log-variance is None for a deterministic head."""
        out = self.bottleneck(h).astype(jnp.float32)
        if self.head == "gaussian":
            return out[..., : self.latent_dim], out[..., self.latent_dim:]
        return out, None

    def decode_logits(self, z: jax.Array) -> jax.Array:
        """The decoder's output before the output activation (what BCE-with-logits takes)."""
        return self.decoder(z).astype(jnp.float32)

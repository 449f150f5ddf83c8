"""The autoencoder: encoder -> linear bottleneck -> decoder -> output activation."""
from __future__ import annotations

import jax
from flax import nnx

OUTPUTS = ("sigmoid", "identity")


class Autoencoder(nnx.Module):
    def __init__(self, encoder: nnx.Module, decoder: nnx.Module, latent_dim: int, output: str, rngs: nnx.Rngs):
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        self.encoder = encoder
        self.bottleneck = nnx.Linear(encoder.features, latent_dim, rngs=rngs)
        self.decoder = decoder
        self.latent_dim = latent_dim
        self.output = output

    def encode(self, x: jax.Array) -> jax.Array:
        return self.bottleneck(self.encoder(x))

    def decode_logits(self, z: jax.Array) -> jax.Array:
        """The decoder's output before the output activation (what BCE-with-logits takes)."""
        return self.decoder(z)

    def activate(self, logits: jax.Array) -> jax.Array:
        return jax.nn.sigmoid(logits) if self.output == "sigmoid" else logits

    def decode(self, z: jax.Array) -> jax.Array:
        return self.activate(self.decode_logits(z))

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.decode(self.encode(x))

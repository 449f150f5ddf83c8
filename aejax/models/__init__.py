"""Networks behind one contract (see ``contract.py``) and the autoencoder that joins them."""
from __future__ import annotations

from flax import nnx
from omegaconf import DictConfig

from aejax.models import mlp  # noqa: F401  (registration)
from aejax.models.autoencoder import OUTPUTS, Autoencoder
from aejax.models.contract import DECODERS, ENCODERS


def resolve_output(output: str, unit_range: bool) -> str:
    """``auto`` means sigmoid for data in [0, 1] and identity for real-valued data."""
    if output == "auto":
        return "sigmoid" if unit_range else "identity"
    return output


def build_autoencoder(cfg: DictConfig, example_shape: tuple[int, ...], output: str, key) -> Autoencoder:
    """Build the encoder, decoder and bottleneck named by a validated config."""
    rngs = nnx.Rngs(params=key)
    encoder = ENCODERS[cfg.encoder.name].builder(cfg.encoder, example_shape, rngs)
    decoder = DECODERS[cfg.decoder.name].builder(cfg.decoder, cfg.model.latent_dim, example_shape, cfg.encoder, rngs)
    return Autoencoder(encoder, decoder, cfg.model.latent_dim, output, rngs)


__all__ = ["Autoencoder", "DECODERS", "ENCODERS", "OUTPUTS", "build_autoencoder", "resolve_output"]

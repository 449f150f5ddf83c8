"""Networks behind one contract (see ``contract.py``) and the autoencoder that joins them."""
from __future__ import annotations

from flax import nnx
from omegaconf import DictConfig

from aejax.models import conv, mlp  # noqa: F401  (registration)
from aejax.models.autoencoder import HEADS, OUTPUTS, Autoencoder
from aejax.models.contract import DECODERS, ENCODERS


def resolve_output(output: str, unit_range: bool) -> str:
    """``auto`` means sigmoid for data in [0, 1] and identity for real-valued data."""
    if output == "auto":
        return "sigmoid" if unit_range else "identity"
    return output


def build_autoencoder(cfg: DictConfig, example_shape: tuple[int, ...], output: str, key) -> Autoencoder:
    """Build the encoder, bottleneck and decoder named by a validated config."""
    rngs = nnx.Rngs(params=key)
    k = cfg.model.latent_dim
    encoder = ENCODERS[cfg.encoder.name].builder(cfg.encoder, tuple(example_shape), rngs)
    code_width = 2 * k if cfg.variant.head == "gaussian" else k
    bottleneck = nnx.Linear(encoder.features, code_width, rngs=rngs)
    decoder = DECODERS[cfg.decoder.name].builder(cfg.decoder, k, tuple(example_shape), encoder, bottleneck, rngs)
    return Autoencoder(encoder, bottleneck, decoder, k, cfg.variant.head, output)


__all__ = ["Autoencoder", "DECODERS", "ENCODERS", "HEADS", "OUTPUTS", "build_autoencoder", "resolve_output"]

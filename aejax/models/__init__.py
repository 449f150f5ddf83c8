"""Networks behind one contract (see ``contract.py``) and the autoencoder that joins them."""
from __future__ import annotations

from flax import nnx
from omegaconf import DictConfig

from aejax.models import conv, mlp  # noqa: F401  (registration)
from aejax.models.autoencoder import HEADS, OUTPUTS, Autoencoder
from aejax.models.contract import DECODERS, DTYPES, ENCODERS


def resolve_output(output: str, unit_range: bool) -> str:
    """``auto`` means sigmoid for data in [0, 1] and identity for real-valued data."""
    if output == "auto":
        return "sigmoid" if unit_range else "identity"
    return output


def build_autoencoder(cfg: DictConfig, example_shape: tuple[int, ...], output: str, key) -> Autoencoder:
    """Build the encoder, bottleneck and decoder named by a validated config.

    ``model.dtype`` (float32 by default) is the computation dtype; parameters are always float32.
    """
    rngs = nnx.Rngs(params=key)
    k = cfg.model.latent_dim
    dtype = DTYPES[cfg.model.get("dtype", "float32")]
    extra = {} if dtype is None else {"dtype": dtype}  # builders written for float32 only still work
    encoder = ENCODERS[cfg.encoder.name].builder(cfg.encoder, tuple(example_shape), rngs, **extra)
    code_width = 2 * k if cfg.variant.head == "gaussian" else k
    bottleneck = nnx.Linear(encoder.features, code_width, dtype=dtype, rngs=rngs)
    decoder = DECODERS[cfg.decoder.name].builder(cfg.decoder, k, tuple(example_shape), encoder, bottleneck, rngs,
                                                 **extra)
    return Autoencoder(encoder, bottleneck, decoder, k, cfg.variant.head, output)


__all__ = ["Autoencoder", "DECODERS", "DTYPES", "ENCODERS", "HEADS", "OUTPUTS", "build_autoencoder", "resolve_output"]

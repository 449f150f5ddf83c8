"""Fully connected encoder and decoder; ``linear`` is the same network with no nonlinearity.

Options: hidden widths, activation, a normalization after each hidden layer (``layer`` or
``rms``), and for decoders ``tied``: decode with the transposed kernels of the encoder's layers
and bottleneck (shared, not copied), so the decoder owns only its biases.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import jax
import jax.numpy as jnp
from flax import nnx
from omegaconf import DictConfig

from aejax.errors import ConfigError
from aejax.models.contract import DECODERS, ENCODERS, Dtype, activation

NORMS = ("none", "layer", "rms")


def _norm(kind: str, width: int, rngs: nnx.Rngs, dtype: Dtype = None) -> nnx.Module | None:
    if kind == "layer":
        return nnx.LayerNorm(width, dtype=dtype, rngs=rngs)
    if kind == "rms":
        return nnx.RMSNorm(width, dtype=dtype, rngs=rngs)
    return None


class MLP(nnx.Module):
    """Dense layers ``widths[0] -> ... -> widths[-1]``; hidden layers get norm + activation.

    With ``final_activation`` the last layer is treated as hidden too (encoders end in features).
    ``dtype`` is the computation dtype (None: float32); the parameters are float32 either way.
    """

    def __init__(self, widths: list[int], act: Callable[[jax.Array], jax.Array], final_activation: bool,
                 norm: str, rngs: nnx.Rngs, dtype: Dtype = None):
        self.widths = list(widths)
        self.layers = nnx.List([nnx.Linear(a, b, dtype=dtype, rngs=rngs) for a, b in zip(widths[:-1], widths[1:])])
        hidden = len(self.layers) if final_activation else len(self.layers) - 1
        self.norms = nnx.List([_norm(norm, widths[i + 1], rngs, dtype) for i in range(hidden)])
        self.act = act

    def __call__(self, h: jax.Array) -> jax.Array:
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < len(self.norms):
                h = self.act(h if self.norms[i] is None else self.norms[i](h))
        return h


class MLPEncoder(nnx.Module):
    def __init__(self, example_shape: tuple[int, ...], hidden: list[int], act, norm: str, rngs: nnx.Rngs,
                 dtype: Dtype = None):
        self.mlp = MLP([math.prod(example_shape), *hidden], act, final_activation=True, norm=norm, rngs=rngs,
                       dtype=dtype)
        self.hidden = list(hidden)
        self.features = self.mlp.widths[-1]

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.mlp(x.reshape(x.shape[0], -1))


class MLPDecoder(nnx.Module):
    def __init__(self, latent_dim: int, example_shape: tuple[int, ...], hidden: list[int], act, norm: str,
                 rngs: nnx.Rngs, dtype: Dtype = None):
        self.example_shape = tuple(example_shape)
        widths = [latent_dim, *hidden, math.prod(example_shape)]
        self.mlp = MLP(widths, act, final_activation=False, norm=norm, rngs=rngs, dtype=dtype)

    def __call__(self, z: jax.Array) -> jax.Array:
        return self.mlp(z).reshape(z.shape[0], *self.example_shape)


class TiedMLPDecoder(nnx.Module):
    """Runs the encoder backwards: ``z -> bottleneck.kernel.T -> ... -> first_layer.kernel.T``."""

    def __init__(self, encoder: MLPEncoder, bottleneck: nnx.Linear, latent_dim: int,
                 example_shape: tuple[int, ...], act, dtype: Dtype = None):
        self.example_shape = tuple(example_shape)
        self.latent_dim = latent_dim
        self.dtype = dtype
        self.encoder_layers = encoder.mlp.layers  # shared references: the same Params as the encoder's
        self.bottleneck = bottleneck
        self.biases = nnx.List([nnx.Param(jnp.zeros((w,))) for w in reversed(encoder.mlp.widths)])
        self.act = act

    def __call__(self, z: jax.Array) -> jax.Array:
        kernels = [self.bottleneck.kernel[...][:, : self.latent_dim]]  # the mean half for a Gaussian head
        kernels += [layer.kernel[...] for layer in reversed(self.encoder_layers)]
        h = z
        for i, (kernel, bias) in enumerate(zip(kernels, self.biases)):
            h, kernel, bias = nnx.nn.dtypes.promote_dtype((h, kernel, bias[...]), dtype=self.dtype)
            h = h @ kernel.T + bias
            if i < len(kernels) - 1:
                h = self.act(h)
        return h.reshape(z.shape[0], *self.example_shape)


@dataclass
class MLPEncoderConfig:
    name: str = "mlp"
    hidden: list[int] = field(default_factory=lambda: [32, 16])  # widths from the input towards the code
    activation: str = "relu"
    norm: str = "none"  # none | layer | rms, after each hidden layer


@dataclass
class MLPDecoderConfig:
    name: str = "mlp"
    hidden: Optional[list[int]] = None  # widths from the code towards the output; null mirrors the encoder
    activation: str = "relu"
    norm: str = "none"
    tied: bool = False  # use the encoder's transposed kernels (mirrored widths, mlp/linear encoder)


@dataclass
class LinearEncoderConfig:
    name: str = "linear"
    hidden: list[int] = field(default_factory=list)


@dataclass
class LinearDecoderConfig:
    name: str = "linear"
    hidden: Optional[list[int]] = None
    tied: bool = False


def _checked(widths: list[int], key: str) -> list[int]:
    if any(w <= 0 for w in widths):
        raise ConfigError(key, f"widths must be > 0, got {widths}")
    return widths


def _check_norm(cfg: DictConfig, key: str) -> str:
    if cfg.norm not in NORMS:
        raise ConfigError(key, f"must be one of {', '.join(NORMS)}; got {cfg.norm!r}")
    return cfg.norm


@ENCODERS.register("mlp", MLPEncoderConfig)
def mlp_encoder(cfg: DictConfig, example_shape, rngs: nnx.Rngs, dtype: Dtype = None) -> MLPEncoder:
    act = activation(cfg.activation, "encoder.activation")
    return MLPEncoder(example_shape, _checked(list(cfg.hidden), "encoder.hidden"), act,
                      _check_norm(cfg, "encoder.norm"), rngs, dtype)


@ENCODERS.register("linear", LinearEncoderConfig)
def linear_encoder(cfg: DictConfig, example_shape, rngs: nnx.Rngs, dtype: Dtype = None) -> MLPEncoder:
    return MLPEncoder(example_shape, _checked(list(cfg.hidden), "encoder.hidden"), activation("identity", ""),
                      "none", rngs, dtype)


def _decoder(cfg: DictConfig, latent_dim: int, example_shape, encoder, bottleneck, act, norm: str, rngs, dtype):
    if cfg.tied:
        if not isinstance(encoder, MLPEncoder):
            raise ConfigError("decoder.tied", "tied weights need an mlp or linear encoder")
        if cfg.hidden is not None or norm != "none":
            raise ConfigError("decoder.tied", "a tied decoder mirrors the encoder: leave decoder.hidden null and norm none")
        return TiedMLPDecoder(encoder, bottleneck, latent_dim, example_shape, act, dtype)
    if cfg.hidden is not None:
        hidden = _checked(list(cfg.hidden), "decoder.hidden")
    else:  # mirror the encoder's widths when it has them
        hidden = list(reversed(getattr(encoder, "hidden", [])))
    return MLPDecoder(latent_dim, example_shape, hidden, act, norm, rngs, dtype)


@DECODERS.register("mlp", MLPDecoderConfig)
def mlp_decoder(cfg: DictConfig, latent_dim: int, example_shape, encoder, bottleneck, rngs: nnx.Rngs,
                dtype: Dtype = None):
    act = activation(cfg.activation, "decoder.activation")
    return _decoder(cfg, latent_dim, example_shape, encoder, bottleneck, act, _check_norm(cfg, "decoder.norm"), rngs,
                    dtype)


@DECODERS.register("linear", LinearDecoderConfig)
def linear_decoder(cfg: DictConfig, latent_dim: int, example_shape, encoder, bottleneck, rngs: nnx.Rngs,
                   dtype: Dtype = None):
    return _decoder(cfg, latent_dim, example_shape, encoder, bottleneck, activation("identity", ""), "none", rngs,
                    dtype)

"""Fully connected encoder and decoder; ``linear`` is the same network with no nonlinearity."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import jax
from flax import nnx
from omegaconf import DictConfig

from aejax.errors import ConfigError
from aejax.models.contract import DECODERS, ENCODERS, activation


class MLP(nnx.Module):
    """Dense layers ``widths[0] -> widths[1] -> ... -> widths[-1]``, activation between them.

    ``final_activation`` says whether the last layer is followed by the activation too.
    """

    def __init__(self, widths: list[int], act: Callable[[jax.Array], jax.Array], final_activation: bool,
                 rngs: nnx.Rngs):
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(widths[:-1], widths[1:])])
        self.act = act
        self.final_activation = final_activation

    def __call__(self, h: jax.Array) -> jax.Array:
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < len(self.layers) - 1 or self.final_activation:
                h = self.act(h)
        return h


class MLPEncoder(nnx.Module):
    def __init__(self, example_shape: tuple[int, ...], hidden: list[int], act, rngs: nnx.Rngs):
        widths = [math.prod(example_shape), *hidden]
        self.mlp = MLP(widths, act, final_activation=True, rngs=rngs)
        self.features = widths[-1]

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.mlp(x.reshape(x.shape[0], -1))


class MLPDecoder(nnx.Module):
    def __init__(self, latent_dim: int, example_shape: tuple[int, ...], hidden: list[int], act, rngs: nnx.Rngs):
        self.example_shape = tuple(example_shape)
        self.mlp = MLP([latent_dim, *hidden, math.prod(example_shape)], act, final_activation=False, rngs=rngs)

    def __call__(self, z: jax.Array) -> jax.Array:
        return self.mlp(z).reshape(z.shape[0], *self.example_shape)


@dataclass
class MLPConfig:
    name: str = "mlp"
    # Hidden widths from the input to the bottleneck. For a decoder, null mirrors the encoder.
    hidden: Optional[list[int]] = field(default_factory=lambda: [32, 16])
    activation: str = "relu"


@dataclass
class LinearConfig:
    name: str = "linear"
    hidden: Optional[list[int]] = field(default_factory=list)


def _widths(cfg: DictConfig, key: str) -> list[int]:
    hidden = list(cfg.hidden)
    bad = [w for w in hidden if w <= 0]
    if bad:
        raise ConfigError(f"{key}.hidden", f"widths must be > 0, got {hidden}")
    return hidden


def _decoder_widths(cfg: DictConfig, encoder_cfg: DictConfig) -> list[int]:
    if cfg.hidden is not None:
        return _widths(cfg, "decoder")
    return list(reversed(encoder_cfg.get("hidden") or []))


@ENCODERS.register("mlp", MLPConfig)
def mlp_encoder(cfg: DictConfig, example_shape, rngs: nnx.Rngs) -> MLPEncoder:
    if cfg.hidden is None:
        raise ConfigError("encoder.hidden", "an encoder needs its widths, e.g. encoder.hidden=[32,16]")
    return MLPEncoder(example_shape, _widths(cfg, "encoder"), activation(cfg.activation, "encoder.activation"), rngs)


@DECODERS.register("mlp", MLPConfig)
def mlp_decoder(cfg: DictConfig, latent_dim: int, example_shape, encoder_cfg: DictConfig, rngs: nnx.Rngs):
    act = activation(cfg.activation, "decoder.activation")
    return MLPDecoder(latent_dim, example_shape, _decoder_widths(cfg, encoder_cfg), act, rngs)


@ENCODERS.register("linear", LinearConfig)
def linear_encoder(cfg: DictConfig, example_shape, rngs: nnx.Rngs) -> MLPEncoder:
    return MLPEncoder(example_shape, _widths(cfg, "encoder"), activation("identity", ""), rngs)


@DECODERS.register("linear", LinearConfig)
def linear_decoder(cfg: DictConfig, latent_dim: int, example_shape, encoder_cfg: DictConfig, rngs: nnx.Rngs):
    return MLPDecoder(latent_dim, example_shape, _decoder_widths(cfg, encoder_cfg), activation("identity", ""), rngs)

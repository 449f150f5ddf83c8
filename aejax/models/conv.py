"""Convolutional encoder and decoder for HxWxC images.

Every stage is a 4x4 kernel with stride 2 and SAME padding: a ``Conv`` halves H and W
(rounding up), a ``ConvTranspose`` doubles them exactly. The kernel is divisible by the
stride, so the transposed convolutions cover the output evenly (no checkerboard overlap).
The encoder is ``conv stages -> flatten -> optional dense``; the decoder mirrors it:
``[dense] -> Linear to c0*h0*w0 -> reshape -> transposed conv stages``, where the last stage
produces the image's channels as logits. The decoder therefore needs ``H`` and ``W``
divisible by ``2**len(channels)`` (28x28 and 32x32 fit two stages, 8x8 fits up to three).

``impl`` chooses how the (transposed) convolutions are computed, with the same parameters either
way: ``xla`` by ``nnx.Conv``/``nnx.ConvTranspose`` (XLA's convolutions), ``matmul`` by
``aejax.models.fastconv`` (reshapes and matrix products, 3-4x faster on CPU), ``auto`` (the
default) by ``matmul`` on CPU and ``xla`` on GPU/TPU.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import jax
from flax import nnx
from omegaconf import DictConfig

from aejax.errors import ConfigError
from aejax.models.contract import DECODERS, ENCODERS, Dtype, activation
from aejax.models.fastconv import IMPLS, KERNEL, STRIDE, MatmulConv, MatmulConvTranspose, use_matmul

Act = Callable[[jax.Array], jax.Array]


class ConvEncoder(nnx.Module):
    def __init__(self, example_shape: tuple[int, ...], channels: list[int], dense: Optional[int], act: Act,
                 rngs: nnx.Rngs, dtype: Dtype = None, matmul: bool = False):
        h, w, c = example_shape
        widths = [c, *channels]
        conv = MatmulConv if matmul else nnx.Conv
        self.convs = nnx.List([conv(a, b, KERNEL, strides=STRIDE, padding="SAME", dtype=dtype, rngs=rngs)
                               for a, b in zip(widths[:-1], widths[1:])])
        for _ in channels:
            h, w = -(-h // 2), -(-w // 2)  # SAME padding with stride 2 rounds up
        flat = h * w * channels[-1]
        self.dense = nnx.Linear(flat, dense, dtype=dtype, rngs=rngs) if dense else None
        self.channels = tuple(channels)  # read by the conv decoder to mirror the encoder
        self.dense_width = dense or 0
        self.features = dense or flat
        self.act = act

    def __call__(self, x: jax.Array) -> jax.Array:
        for conv in self.convs:
            x = self.act(conv(x))
        x = x.reshape(x.shape[0], -1)
        return self.act(self.dense(x)) if self.dense is not None else x


class ConvDecoder(nnx.Module):
    def __init__(self, latent_dim: int, example_shape: tuple[int, ...], channels: list[int], dense: int, act: Act,
                 rngs: nnx.Rngs, dtype: Dtype = None, matmul: bool = False):
        h, w, c = example_shape
        n = len(channels)
        self.start = (h // 2**n, w // 2**n, channels[0])
        self.dense = nnx.Linear(latent_dim, dense, dtype=dtype, rngs=rngs) if dense else None
        self.project = nnx.Linear(dense or latent_dim, math.prod(self.start), dtype=dtype, rngs=rngs)
        widths = [*channels, c]
        deconv = MatmulConvTranspose if matmul else nnx.ConvTranspose
        self.deconvs = nnx.List([deconv(a, b, KERNEL, strides=STRIDE, padding="SAME", dtype=dtype, rngs=rngs)
                                 for a, b in zip(widths[:-1], widths[1:])])
        self.act = act

    def __call__(self, z: jax.Array) -> jax.Array:
        if self.dense is not None:
            z = self.act(self.dense(z))
        x = self.act(self.project(z)).reshape(z.shape[0], *self.start)
        for i, deconv in enumerate(self.deconvs):
            x = deconv(x)
            if i < len(self.deconvs) - 1:
                x = self.act(x)
        return x


@dataclass
class ConvEncoderConfig:
    name: str = "conv"
    channels: list[int] = field(default_factory=lambda: [32, 64])  # per stride-2 stage, from the image inward
    activation: str = "relu"
    dense: Optional[int] = None  # width of a dense layer after the convolutions; null: none
    impl: str = "auto"  # auto (matmul on CPU, xla on GPU/TPU) | matmul | xla: same parameters and results


@dataclass
class ConvDecoderConfig:
    name: str = "conv"
    channels: Optional[list[int]] = None  # per stage, from the code outward; null mirrors a conv encoder
    activation: str = "relu"
    dense: Optional[int] = None  # dense layer before the projection; null mirrors a conv encoder, 0: none
    impl: str = "auto"  # auto (matmul on CPU, xla on GPU/TPU) | matmul | xla: same parameters and results


def _image(example_shape: tuple[int, ...], part: str) -> tuple[int, int, int]:
    if len(example_shape) != 3:
        raise ConfigError(f"{part}.name", f"the conv {part} needs images of shape HxWxC; got {tuple(example_shape)}")
    return tuple(example_shape)  # type: ignore[return-value]


def _matmul(cfg: DictConfig, part: str) -> bool:
    if cfg.impl not in IMPLS:
        raise ConfigError(f"{part}.impl", f"must be one of {', '.join(IMPLS)}; got {cfg.impl!r}")
    return use_matmul(cfg.impl)


def _positive(values: list[int], key: str) -> list[int]:
    if not values or any(v <= 0 for v in values):
        raise ConfigError(key, f"needs at least one stage and every value > 0; got {values}")
    return values


@ENCODERS.register("conv", ConvEncoderConfig)
def conv_encoder(cfg: DictConfig, example_shape, rngs: nnx.Rngs, dtype: Dtype = None) -> ConvEncoder:
    shape = _image(example_shape, "encoder")
    if cfg.dense is not None and cfg.dense <= 0:
        raise ConfigError("encoder.dense", f"must be > 0 or null; got {cfg.dense}")
    channels = _positive(list(cfg.channels), "encoder.channels")
    return ConvEncoder(shape, channels, cfg.dense, activation(cfg.activation, "encoder.activation"), rngs, dtype,
                       matmul=_matmul(cfg, "encoder"))


@DECODERS.register("conv", ConvDecoderConfig)
def conv_decoder(cfg: DictConfig, latent_dim: int, example_shape, encoder: nnx.Module, bottleneck: nnx.Module,
                 rngs: nnx.Rngs, dtype: Dtype = None) -> ConvDecoder:
    h, w, c = _image(example_shape, "decoder")
    matmul = _matmul(cfg, "decoder")
    mirror = isinstance(encoder, ConvEncoder)
    default = list(reversed(encoder.channels)) if mirror else [64, 32]
    channels = _positive(default if cfg.channels is None else list(cfg.channels), "decoder.channels")
    dense = cfg.dense if cfg.dense is not None else (encoder.dense_width if mirror else 0)
    if dense < 0:
        raise ConfigError("decoder.dense", f"must be >= 0 (0 = no dense layer) or null; got {dense}")
    n, f = len(channels), 2 ** len(channels)
    if h % f or w % f:
        fit = max(k for k in range(n + 1) if h % 2**k == 0 and w % 2**k == 0)
        raise ConfigError("decoder.channels", f"{n} stride-2 stages need H and W divisible by {f}; got {h}x{w} "
                                              f"(at most {fit} stages fit this image)")
    return ConvDecoder(latent_dim, (h, w, c), channels, dense, activation(cfg.activation, "decoder.activation"), rngs,
                       dtype, matmul=matmul)

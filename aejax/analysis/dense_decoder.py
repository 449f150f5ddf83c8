"""A dense decoder as plain layers, so that the explorer page can run it at any clicked code.

``dense_layers(model)`` reads a *built* autoencoder: when its decoder is a stack of dense layers
(``mlp`` or ``linear``, tied or not) with no normalization, computing in float32, it returns the
layers as ``(kernel [in, out], bias [out])`` pairs, the hidden activation's name and the output
activation; ``decode(layers, z)`` runs them in numpy. Any other decoder (conv, normalized, mixed
precision, an activation the page does not know) gives ``None``: the page then shows the
snapshot's decoded grid instead. It works on traced arrays too, so the snapshot program returns the
weights with the codes in its one transfer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

# the hidden activations the page implements (aejax.models.contract.ACTIVATIONS' names)
PAGE_ACTIVATIONS = ("relu", "gelu", "silu", "elu", "leaky_relu", "tanh", "sigmoid", "identity")
PREFIX = "decoder_"  # snapshot keys: decoder_w0, decoder_b0, ..., decoder_activation, decoder_output


@dataclass
class DenseLayers:
    weights: list[tuple[Any, Any]]  # (kernel [in, out], bias [out]) per layer, the code's side first
    activation: str  # between layers (not after the last)
    output: str  # sigmoid | identity, after the last layer

    def arrays(self) -> dict[str, Any]:
        out = {}
        for i, (w, b) in enumerate(self.weights):
            out[f"{PREFIX}w{i}"], out[f"{PREFIX}b{i}"] = w, b
        return out


def _float32(dtype) -> bool:
    return dtype is None or np.dtype(dtype) == np.float32


def _activation_name(fn) -> Optional[str]:
    from aejax.models.contract import ACTIVATIONS

    names = [name for name, f in ACTIVATIONS.items() if f is fn and name in PAGE_ACTIVATIONS]
    return names[0] if names else None


def dense_layers(model) -> Optional[DenseLayers]:
    """The decoder of ``model`` (an ``aejax.Autoencoder``) as dense layers, or ``None`` when it is
    not one the page can run exactly (see the module's doc)."""
    from aejax.models.mlp import MLPDecoder, TiedMLPDecoder

    decoder = getattr(model, "decoder", None)  # a sparse dictionary's decoder is a matrix of its own
    if isinstance(decoder, MLPDecoder):
        mlp = decoder.mlp
        if any(n is not None for n in mlp.norms) or not all(_float32(l.dtype) for l in mlp.layers):
            return None
        weights = [(l.kernel[...], l.bias[...] if l.bias is not None else np.zeros(l.out_features, np.float32))
                   for l in mlp.layers]
    elif isinstance(decoder, TiedMLPDecoder):
        if not _float32(decoder.dtype):
            return None
        kernels = [decoder.bottleneck.kernel[...][:, : decoder.latent_dim]]
        kernels += [layer.kernel[...] for layer in reversed(decoder.encoder_layers)]
        weights = [(k.T, b[...]) for k, b in zip(kernels, decoder.biases)]
    else:
        return None
    name = _activation_name(decoder.mlp.act if isinstance(decoder, MLPDecoder) else decoder.act)
    return None if name is None else DenseLayers(weights, name, model.output)


def from_snapshot(snap: dict[str, np.ndarray]) -> Optional[DenseLayers]:
    """The layers saved in a snapshot's arrays (``step_XXXXXXX.npz``), or ``None``."""
    if f"{PREFIX}w0" not in snap or f"{PREFIX}activation" not in snap:
        return None
    n = sum(1 for key in snap if key.startswith(f"{PREFIX}w"))
    weights = [(np.asarray(snap[f"{PREFIX}w{i}"], np.float32), np.asarray(snap[f"{PREFIX}b{i}"], np.float32))
               for i in range(n)]
    return DenseLayers(weights, str(snap[f"{PREFIX}activation"]), str(snap[f"{PREFIX}output"]))


def _act(name: str, h: np.ndarray) -> np.ndarray:
    if name == "relu":
        return np.maximum(h, 0)
    if name == "gelu":  # jax.nn.gelu's default: the tanh approximation
        return 0.5 * h * (1 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h ** 3)))
    if name == "silu":
        return h / (1 + np.exp(-h))
    if name == "elu":
        return np.where(h > 0, h, np.expm1(np.minimum(h, 0)))
    if name == "leaky_relu":
        return np.where(h >= 0, h, 0.01 * h)
    if name == "tanh":
        return np.tanh(h)
    if name == "sigmoid":
        return 1 / (1 + np.exp(-h))
    return h


def decode(layers: DenseLayers, z: np.ndarray) -> np.ndarray:
    """``[B, k]`` codes to ``[B, values]`` outputs, in numpy (float64): what the page computes."""
    h = np.asarray(z, np.float64)
    for i, (w, b) in enumerate(layers.weights):
        h = h @ np.asarray(w, np.float64) + np.asarray(b, np.float64)
        if i < len(layers.weights) - 1:
            h = _act(layers.activation, h)
    return 1 / (1 + np.exp(-h)) if layers.output == "sigmoid" else h

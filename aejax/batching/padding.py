"""How a batched group pads a model's code to the group's largest, and cuts it back.

A parameter that sizes with the code (``model.latent_dim``) grows with zeros at the end of each
axis that differs: the decoder's input rows, a deterministic bottleneck's columns. A parameter
whose last axis is several blocks of the code's width is padded block by block, so each block
keeps its place: a Gaussian head's bottleneck ``[features, 2k]`` is the mean's ``k`` units and then
the log-variance's, and padded to ``2K`` as ``[mean_k, 0.., logvar_k, 0..]`` (padding at the end
would put log-variance columns in the mean's slots). The model declares its blocks
(``code_layout()``, by the parameter's path in its state: ``aejax.models.Autoencoder``); the same
rule applies to every tree shaped like the parameters (the optimizer's moments), matched by the
end of the leaf's path. ``cut`` is the exact inverse of ``pad``.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

Layout = dict[tuple, int]  # a parameter's path (its dict keys in the state) -> blocks of its last axis


def layout(model: nnx.Module) -> Layout:
    """The blocks ``model`` declares (none: every parameter is one block)."""
    declared = getattr(model, "code_layout", None)
    return dict(declared()) if declared is not None else {}


def pad(a: jax.Array, shape: tuple[int, ...], blocks: int = 1) -> jax.Array:
    """``a`` with zeros after its values along each axis, up to ``shape`` (a leading models axis
    kept); its last axis as ``blocks`` equal blocks, each padded at its own end."""
    lead = a.ndim - len(shape)
    if tuple(a.shape[lead:]) == tuple(shape):
        return a
    if blocks > 1:
        out = pad(a.reshape(*a.shape[:-1], blocks, -1), (*shape[:-1], blocks, shape[-1] // blocks))
        return out.reshape(*out.shape[:-2], shape[-1])
    return jnp.pad(a, [(0, 0)] * lead + [(0, t - s) for s, t in zip(a.shape[lead:], shape)])


def cut(a: jax.Array, shape: tuple[int, ...], blocks: int = 1) -> jax.Array:
    """The inverse of ``pad``: the first ``shape`` values of ``a`` along each axis (of each block)."""
    if blocks > 1 and a.shape[-1] != shape[-1]:
        out = cut(a.reshape(*a.shape[:-1], blocks, -1), (*shape[:-1], blocks, shape[-1] // blocks))
        return out.reshape(*out.shape[:-2], shape[-1])
    return a[tuple(slice(0, d) for d in shape)]


def _keys(path) -> tuple:
    return tuple(k.key for k in path if isinstance(k, jax.tree_util.DictKey))


def fit(fn: Callable[..., jax.Array], tree, like, blocks: Layout, lead: tuple[int, ...] = ()):
    """``fn(leaf, target_shape, leaf_blocks)`` (``pad`` or ``cut``) over ``tree`` to the shapes of
    ``like`` (``lead`` put before each: a models axis), each leaf with the blocks of the parameter
    its path ends with."""
    def one(path, a, t):
        keys = _keys(path)
        n = next((b for p, b in blocks.items() if len(keys) >= len(p) and keys[len(keys) - len(p):] == p), 1)
        return fn(a, (*lead, *t.shape), n)

    return jax.tree_util.tree_map_with_path(one, tree, like)

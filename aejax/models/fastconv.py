"""Stride-2 4x4 convolutions as reshapes and matrix products, for XLA:CPU.

XLA:CPU runs ``lax.conv_general_dilated`` far below matmul speed for the conv autoencoder's
layers, and the transposed convolutions (input-dilated convolutions) worst of all, slower still
inside a compiled loop. The same arithmetic written as pads, reshapes and one matrix product per
layer runs 3-4x faster for the whole autoencoder (docs/performance.md):

- ``conv_s2d``: a stride-2 4x4 ``SAME`` convolution gathers the 16 pixels under each window
  (slices of the padded input's space-to-depth view) along the channels and multiplies by the
  kernel as a ``(16 * C_in, C_out)`` matrix.
- ``conv_transpose_scatter``: a stride-2 4x4 ``SAME`` transposed convolution multiplies every input
  pixel by the whole kernel as a ``(C_in, 16 * C_out)`` matrix and sums each pixel's 4x4
  contribution into place (four padded blocks). Forms that gather instead (one product per output
  parity, or 3x3 windows with a zero-padded kernel) measured 2-4x slower.

``MatmulConv`` and ``MatmulConvTranspose`` are ``nnx.Conv`` / ``nnx.ConvTranspose`` with the
same parameters (names, shapes, initialisation) computed this way, so a checkpoint of either
loads into the other and the results agree to float rounding (``tests/test_fastconv.py``). They
say ``convolves = False``: nothing in them is an XLA convolution, so the training loop keeps the
one-scan epoch on CPU (``aejax.training.parts.convolves``).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

KERNEL = (4, 4)
STRIDE = (2, 2)
IMPLS = ("auto", "matmul", "xla")


def use_matmul(impl: str, backend: str | None = None) -> bool:
    """``auto``: the matmul formulation on CPU, XLA's convolutions on GPU/TPU (their conv kernels
    are fast); ``matmul`` / ``xla`` force one."""
    return impl == "matmul" or (impl == "auto" and (backend or jax.default_backend()) == "cpu")


def _same_pad(size: int) -> tuple[int, int]:
    """``SAME`` padding of a stride-2 size-4 window over ``size`` pixels, as XLA computes it."""
    total = max((-(-size // 2) - 1) * 2 + 4 - size, 0)
    return total // 2, total - total // 2


def conv_s2d(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """``lax.conv_general_dilated(x, kernel, (2, 2), "SAME")`` for NHWC ``x`` and an HWIO 4x4
    ``kernel``: the 16 pixels under each window gathered along the channels, then one matrix
    product with the kernel as a ``(16 * C_in, C_out)`` matrix."""
    n, h, w, c = x.shape
    oh, ow = -(-h // 2), -(-w // 2)
    xp = jnp.pad(x, ((0, 0), _same_pad(h), _same_pad(w), (0, 0)))  # even sizes: 2*oh+2, 2*ow+2
    s = xp.reshape(n, oh + 1, 2, ow + 1, 2, c)  # (n, i, r, j, s, c): pixel (2i+r, 2j+s)
    # window row a = 2p + r, column b = 2q + s: block (i+p, j+q), offset (r, s)
    cols = [s[:, p:p + oh, r, q:q + ow, t] for p in (0, 1) for r in (0, 1) for q in (0, 1) for t in (0, 1)]
    patches = jnp.concatenate(cols, axis=-1).reshape(n * oh * ow, 16 * c)
    return (patches @ kernel.reshape(16 * c, -1)).reshape(n, oh, ow, -1)


def conv_transpose_scatter(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """``lax.conv_transpose(x, kernel, (2, 2), "SAME")`` (flax's ``nnx.ConvTranspose``, kernel not
    transposed) for NHWC ``x`` and an HWIO 4x4 ``kernel``: one matrix product gives every input
    pixel's 4x4 contribution, which are then summed into place.

    Input pixel ``(i, j)`` adds ``x[i, j] @ kernel[3 - a, 3 - b]`` to output pixel
    ``(2i + a - 1, 2j + b - 1)``; with the output padded by one pixel that is
    ``(2(i + p) + r, 2(j + q) + s)`` for ``a = 2p + r``, ``b = 2q + s``."""
    n, h, w, c = x.shape
    k = jnp.flip(kernel, (0, 1)).transpose(2, 0, 1, 3).reshape(c, -1)  # (c, [a, b, o])
    g = (x.reshape(n * h * w, c) @ k).reshape(n, h, w, 2, 2, 2, 2, -1)  # (n, i, j, p, r, q, s, o)
    z = sum(jnp.pad(g[:, :, :, p, :, q], ((0, 0), (p, 1 - p), (q, 1 - q), (0, 0), (0, 0), (0, 0)))
            for p in (0, 1) for q in (0, 1))  # (n, i, j, r, s, o) of the padded output
    z = z.transpose(0, 1, 3, 2, 4, 5).reshape(n, 2 * h + 2, 2 * w + 2, -1)
    return z[:, 1:-1, 1:-1]


def _check(layer, name: str) -> None:
    if (tuple(layer.kernel_size) != KERNEL or layer.strides not in (STRIDE, 2, [2, 2]) or layer.padding != "SAME"
            or layer.kernel_dilation not in (None, 1, (1, 1)) or layer.mask is not None):
        raise ValueError(f"{name} computes only stride-2 4x4 SAME convolutions without dilation or mask")


def _finish(layer, x: jax.Array, y_fn) -> jax.Array:
    kernel = layer.kernel[...]
    bias = layer.bias[...] if layer.bias is not None else None
    x, kernel, bias = layer.promote_dtype((x, kernel, bias), dtype=layer.dtype)
    y = y_fn(x, kernel)
    return y + bias if bias is not None else y


class MatmulConv(nnx.Conv):
    """``nnx.Conv(c_in, c_out, (4, 4), strides=(2, 2), padding="SAME")`` computed by ``conv_s2d``."""

    convolves = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _check(self, "MatmulConv")
        if self.feature_group_count != 1:
            raise ValueError("MatmulConv computes only ungrouped convolutions")

    def __call__(self, inputs: jax.Array, out_sharding=None) -> jax.Array:
        return _finish(self, inputs, conv_s2d)


class MatmulConvTranspose(nnx.ConvTranspose):
    """``nnx.ConvTranspose(c_in, c_out, (4, 4), strides=(2, 2), padding="SAME")`` computed by
    ``conv_transpose_scatter``."""

    convolves = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _check(self, "MatmulConvTranspose")
        if self.transpose_kernel:
            raise ValueError("MatmulConvTranspose computes only transpose_kernel=False")

    def __call__(self, inputs: jax.Array) -> jax.Array:
        return _finish(self, inputs, conv_transpose_scatter)

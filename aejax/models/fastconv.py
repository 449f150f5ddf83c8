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

Their gradients are written out (``jax.custom_vjp``) rather than left to autodiff: each layer's
input gradient is the other layer's form (a convolution's is a product then an overlap-add, a
transposed convolution's the windows then a product), and the kernel gradient is one product of
the windows with the output's gradient, its narrow operand transposed into memory first so that
XLA:CPU runs it in its fast matmul library. Autodiff of the same forward pass summed four
full-size padded copies for the overlap-add's gradient and left the kernel gradients to a slower
kernel (docs/performance.md). The cost: no forward-mode autodiff (``jax.jvp``) through these
layers; they say ``forward_mode = False`` and the contractive term takes its Jacobian-vector
products through reverse mode for them (``aejax.models.contract.forward_mode``).

``MatmulConv`` and ``MatmulConvTranspose`` are ``nnx.Conv`` / ``nnx.ConvTranspose`` with the
same parameters (names, shapes, initialisation) computed this way, so a checkpoint of either
loads into the other and the results agree to float rounding (``tests/test_fastconv.py``). They
say ``convolves = False``: nothing in them is an XLA convolution, so the training loop keeps the
one-scan epoch on CPU (``aejax.training.parts.convolves``).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
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


def _windows(xp: jax.Array, oh: int, ow: int) -> jax.Array:
    """The 16 pixels under each stride-2 4x4 window of an evenly padded ``(n, 2 oh + 2, 2 ow + 2, c)``
    image, along the channels: ``(n, oh, ow, 16 c)``, ordered ``(p, q, r, t, c)`` for window pixel
    ``(2p + r, 2q + t)``: the image's 2x2 blocks side by side (space-to-depth), and window ``(i, j)``
    the blocks ``(i + p, j + q)``."""
    n, _, _, c = xp.shape
    blocks = xp.reshape(n, oh + 1, 2, ow + 1, 2, c).transpose(0, 1, 3, 2, 4, 5)  # (n, i, j, r, t, c)
    return jnp.stack([blocks[:, p:p + oh, q:q + ow] for p in (0, 1) for q in (0, 1)], axis=3).reshape(n, oh, ow, -1)


def _overlap_add(g: jax.Array) -> jax.Array:
    """The transpose of ``_windows``: every window's ``16 c`` values summed into place,
    ``(n, oh, ow, 16 c)`` -> ``(n, 2 oh + 2, 2 ow + 2, c)``. The blocks are put in image order
    before the four shifted sums, so that the sums write the image directly."""
    n, oh, ow, _ = g.shape
    g = g.reshape(n, oh, ow, 2, 2, 2, 2, -1).transpose(0, 3, 4, 1, 5, 2, 6, 7)  # (n, p, q, i, r, j, t, c)
    z = sum(jnp.pad(g[:, p, q], ((0, 0), (p, 1 - p), (0, 0), (q, 1 - q), (0, 0), (0, 0)))
            for p in (0, 1) for q in (0, 1))  # (n, i, r, j, t, c): pixel (2i + r, 2j + t)
    return z.reshape(n, 2 * oh + 2, 2 * ow + 2, -1)


def _window_order(kernel: jax.Array) -> jax.Array:
    """An HWIO 4x4 kernel's rows in ``_windows``' order: ``(p, q, r, t, c, o)`` for ``(2p + r, 2q + t)``."""
    return kernel.reshape(2, 2, 2, 2, *kernel.shape[2:]).transpose(0, 2, 1, 3, 4, 5)


def _matmul(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a @ b`` over the last axis of ``a``, keeping its leading axes."""
    return (a.reshape(-1, a.shape[-1]) @ b).reshape(*a.shape[:-1], b.shape[-1])


def _gram(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a^T @ b`` summed over all leading axes. The narrower operand is transposed into memory
    first (the barrier keeps XLA from folding the transpose back into the product), so that the
    product has the row-major operands XLA:CPU hands to its fast matmul library (YNNPACK); a product
    with a transposed left operand goes to a slower generic kernel (3x slower for the kernel
    gradients here)."""
    a, b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    if a.shape[1] <= b.shape[1]:
        return lax.optimization_barrier(a.T) @ b
    return lax.optimization_barrier(lax.optimization_barrier(b.T) @ a).T


def _patches(x: jax.Array) -> jax.Array:
    """The windows of a stride-2 4x4 ``SAME`` convolution over ``x``: ``(n, ceil(h/2), ceil(w/2), 16 c)``."""
    n, h, w, _ = x.shape
    return _windows(jnp.pad(x, ((0, 0), _same_pad(h), _same_pad(w), (0, 0))), -(-h // 2), -(-w // 2))


@jax.custom_vjp
def _conv(x: jax.Array, kmat: jax.Array) -> jax.Array:
    return _matmul(_patches(x), kmat)


def _conv_fwd(x, kmat):
    return _conv(x, kmat), (x, kmat)


def _conv_bwd(res, dy):
    x, kmat = res
    n, h, w, _ = x.shape
    (top, _), (left, _) = _same_pad(h), _same_pad(w)
    dx = _overlap_add(_matmul(dy, kmat.T))[:, top:top + h, left:left + w]
    return dx, _gram(_patches(x), dy)  # XLA computes the patches once for both passes


_conv.defvjp(_conv_fwd, _conv_bwd)


@jax.custom_vjp
def _deconv(x: jax.Array, kmat: jax.Array) -> jax.Array:
    return _overlap_add(_matmul(x, kmat))[:, 1:-1, 1:-1]


def _deconv_fwd(x, kmat):
    return _deconv(x, kmat), (x, kmat)


def _deconv_bwd(res, dy):
    x, kmat = res
    dg = _windows(jnp.pad(dy, ((0, 0), (1, 1), (1, 1), (0, 0))), x.shape[1], x.shape[2])
    return _matmul(dg, kmat.T), _gram(x, dg)


_deconv.defvjp(_deconv_fwd, _deconv_bwd)


def conv_s2d(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """``lax.conv_general_dilated(x, kernel, (2, 2), "SAME")`` for NHWC ``x`` and an HWIO 4x4
    ``kernel``: the 16 pixels under each window gathered along the channels, then one matrix
    product with the kernel as a ``(16 * C_in, C_out)`` matrix. Its gradient is written out as
    matrix products too: the input's is a transposed convolution (product, then overlap-add), the
    kernel's the windows' product with the output's gradient."""
    return _conv(x, _window_order(kernel).reshape(-1, kernel.shape[-1]))


def conv_transpose_scatter(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """``lax.conv_transpose(x, kernel, (2, 2), "SAME")`` (flax's ``nnx.ConvTranspose``, kernel not
    transposed) for NHWC ``x`` and an HWIO 4x4 ``kernel``: one matrix product gives every input
    pixel's 4x4 contribution, which are then summed into place.

    Input pixel ``(i, j)`` adds ``x[i, j] @ kernel[3 - a, 3 - b]`` to output pixel
    ``(2i + a - 1, 2j + b - 1)``; with the output padded by one pixel that is
    ``(2(i + p) + r, 2(j + q) + t)`` for ``a = 2p + r``, ``b = 2q + t``: the transpose of the
    windows of a strided convolution. The input's gradient is a strided convolution of the
    output's (windows, then product)."""
    k = _window_order(jnp.flip(kernel, (0, 1)))  # (p, q, r, t, c, o)
    return _deconv(x, k.transpose(4, 0, 1, 2, 3, 5).reshape(x.shape[-1], -1))


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
    forward_mode = False  # reverse-mode gradients only (jax.custom_vjp)

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
    forward_mode = False  # reverse-mode gradients only (jax.custom_vjp)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _check(self, "MatmulConvTranspose")
        if self.transpose_kernel:
            raise ValueError("MatmulConvTranspose computes only transpose_kernel=False")

    def __call__(self, inputs: jax.Array) -> jax.Array:
        return _finish(self, inputs, conv_transpose_scatter)

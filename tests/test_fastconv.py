"""The matmul convolutions (``aejax.models.fastconv``) equal flax's ``nnx.Conv``/``nnx.ConvTranspose``:
same parameters, same values and gradients, same training losses; ``impl`` picks them on CPU."""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import compose_config
from flax import nnx
from omegaconf import OmegaConf

from aejax.errors import ConfigError
from aejax.experiment import run
from aejax.models.conv import ConvDecoderConfig, ConvEncoderConfig, conv_decoder, conv_encoder
from aejax.assemble import build_model, build_objective
from aejax.models.contract import forward_mode
from aejax.models.fastconv import MatmulConv, MatmulConvTranspose, conv_s2d, conv_transpose_scatter, use_matmul
from aejax.training.parts import convolves
from aejax.variants.terms import jacobian_sq_norm_estimate

SHAPES = [(14, 14, 32, 64), (7, 7, 64, 32), (9, 6, 1, 1), (7, 5, 3, 4), (1, 1, 2, 3)]  # the AE's, odd, tiny


def _values_and_grads(layer, x):
    graphdef, params = nnx.split(layer)

    def loss(params, x):  # a weighted sum, so every output pixel's gradient differs
        y = nnx.merge(graphdef, params)(x)
        return jnp.sum(y * jax.random.normal(jax.random.key(2), y.shape))

    with jax.default_matmul_precision("highest"):
        y = layer(x)
        grads = jax.grad(loss, argnums=(0, 1))(params, x)
    return y, grads


@pytest.mark.parametrize("fast, reference", [(MatmulConv, nnx.Conv), (MatmulConvTranspose, nnx.ConvTranspose)])
@pytest.mark.parametrize("h, w, c_in, c_out", SHAPES)
def test_values_and_gradients_equal_flax(fast, reference, h, w, c_in, c_out):
    x = jax.random.normal(jax.random.key(1), (3, h, w, c_in))
    layers = [cls(c_in, c_out, (4, 4), strides=(2, 2), padding="SAME", rngs=nnx.Rngs(0)) for cls in (fast, reference)]
    (y, (gp, gx)), (y_ref, (gp_ref, gx_ref)) = (_values_and_grads(layer, x) for layer in layers)
    assert y.shape == y_ref.shape  # conv: ceil(h/2) x ceil(w/2); transposed: 2h x 2w
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gx, gx_ref, rtol=1e-5, atol=1e-5)
    for name in ("kernel", "bias"):
        np.testing.assert_allclose(gp[name][...], gp_ref[name][...], rtol=1e-5, atol=1e-4)
        assert float(jnp.abs(gp[name][...]).max()) > 1e-3  # a real gradient, not zeros on both sides


def _lax_conv(x, k):
    return jax.lax.conv_general_dilated(x, k, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _lax_deconv(x, k):
    return jax.lax.conv_transpose(x, k, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


@pytest.mark.parametrize("fast, reference", [(conv_s2d, _lax_conv), (conv_transpose_scatter, _lax_deconv)])
def test_written_out_gradients_equal_autodiff_of_xla_convolutions(fast, reference):
    """The hand-written backward passes (jax.custom_vjp), compiled, batched with vmap and taken a
    second time (the gradient of a gradient norm), against JAX's autodiff of lax's convolutions;
    also the kernel's gradient alone, where the input's is never needed (the first layer)."""
    x = jax.random.normal(jax.random.key(1), (4, 2, 7, 5, 3))
    k = jax.random.normal(jax.random.key(2), (4, 4, 3, 6))
    w = jax.random.normal(jax.random.key(3), jax.eval_shape(reference, x[0], k).shape)

    def both(conv):
        value = lambda x, k: jnp.sum(jnp.sin(conv(x, k)) * w)  # noqa: E731
        grads = jax.jit(jax.vmap(jax.grad(value, argnums=(0, 1)), in_axes=(0, None)))(x, k)
        kernel_only = jax.jit(jax.grad(value, argnums=1))(x[0], k)
        second = jax.grad(lambda k: sum(jnp.sum(g ** 2) for g in jax.grad(value, argnums=(0, 1))(x[0], k)))(k)
        return grads, kernel_only, second

    with jax.default_matmul_precision("highest"):
        got, want = both(fast), both(reference)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert float(jnp.abs(b).max()) > 1e-2
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4 * float(jnp.abs(b).max()))


def test_forward_mode_terms_go_through_reverse_mode():
    """The matmul layers have no forward mode (``forward_mode = False``); the contractive term's
    Jacobian-vector products then go through reverse mode and give what XLA's convolutions give
    with ``jax.jvp``: same penalty for the estimate (same random projections) and the exact norm."""
    x = jax.random.uniform(jax.random.key(1), (3, 8, 8, 1))
    penalties = {}
    for impl in ("matmul", "xla"):
        for estimator in ("projection", "exact"):
            cfg = compose_config("encoder=conv", "decoder=conv", "variant=contractive", f"encoder.impl={impl}",
                                 f"decoder.impl={impl}", f"variant.terms.contractive.estimator={estimator}",
                                 "logger.mode=disabled")
            model = build_model(cfg, (8, 8, 1), "sigmoid", jax.random.key(0))
            assert forward_mode(model) is (impl == "xla")
            objective = build_objective(cfg.variant)
            with jax.default_matmul_precision("highest"):
                out = objective(model, x, jnp.ones(3), jax.random.key(4), jnp.int32(0))
                grad = jax.grad(lambda m: objective(m, x, jnp.ones(3), jax.random.key(4), jnp.int32(0))["loss"]
                                .mean())(model)
            penalties[impl, estimator] = (out["contractive"], grad.encoder.convs[0].kernel[...])
    for estimator in ("projection", "exact"):
        (p, g), (p_ref, g_ref) = penalties["matmul", estimator], penalties["xla", estimator]
        assert float(jnp.min(p_ref)) > 0
        np.testing.assert_allclose(p, p_ref, rtol=1e-5)
        np.testing.assert_allclose(g, g_ref, rtol=1e-4, atol=1e-6)
    with pytest.raises(TypeError, match="forward-mode"):  # what jax.jvp itself says of the layers
        jacobian_sq_norm_estimate(lambda x: conv_s2d(x, jnp.ones((4, 4, 1, 2))), x, jax.random.key(0), 1)


def test_other_layer_settings_are_refused():
    with pytest.raises(ValueError, match="stride-2 4x4"):
        MatmulConv(1, 2, (3, 3), strides=(2, 2), padding="SAME", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="stride-2 4x4"):
        MatmulConvTranspose(1, 2, (4, 4), strides=(1, 1), padding="SAME", rngs=nnx.Rngs(0))


def _built(impl: str):
    rngs = nnx.Rngs(0)
    encoder = conv_encoder(OmegaConf.structured(ConvEncoderConfig(impl=impl)), (28, 28, 1), rngs)
    decoder = conv_decoder(OmegaConf.structured(ConvDecoderConfig(impl=impl)), 2, (28, 28, 1), encoder, None, rngs)
    return encoder, decoder


def test_impl_keeps_the_parameters_and_picks_the_layers():
    (enc, dec), (enc_ref, dec_ref) = _built("matmul"), _built("xla")
    assert [type(m) for m in (*enc.convs, *dec.deconvs)] == [MatmulConv, MatmulConv, MatmulConvTranspose,
                                                            MatmulConvTranspose]
    assert [type(m) for m in (*enc_ref.convs, *dec_ref.deconvs)] == [nnx.Conv, nnx.Conv, nnx.ConvTranspose,
                                                                    nnx.ConvTranspose]
    for fast, ref in ((enc, enc_ref), (dec, dec_ref)):  # same paths, shapes and initial values: checkpoints fit both
        a, b = nnx.to_flat_state(nnx.state(fast, nnx.Param)), nnx.to_flat_state(nnx.state(ref, nnx.Param))
        assert [path for path, _ in a] == [path for path, _ in b]
        for (_, u), (_, v) in zip(a, b):
            np.testing.assert_array_equal(u[...], v[...])
    # the CPU unroll asks the built model: the matmul layers hold no XLA convolution
    assert (convolves(enc), convolves(dec), convolves(enc_ref), convolves(dec_ref)) == (False, False, True, True)
    assert type(_built("auto")[0].convs[0]) is (MatmulConv if jax.default_backend() == "cpu" else nnx.Conv)
    assert (use_matmul("auto", "cpu"), use_matmul("auto", "gpu"), use_matmul("auto", "tpu")) == (True, False, False)
    assert (use_matmul("matmul", "gpu"), use_matmul("xla", "cpu")) == (True, False)


@pytest.mark.parametrize("part", ["encoder", "decoder"])
def test_an_unknown_impl_names_its_key(part):
    enc_cfg = ConvEncoderConfig(impl="fast" if part == "encoder" else "auto")
    with pytest.raises(ConfigError, match=f"{part}.impl"):
        encoder = conv_encoder(OmegaConf.structured(enc_cfg), (8, 8, 1), nnx.Rngs(0))
        conv_decoder(OmegaConf.structured(ConvDecoderConfig(impl="fast")), 2, (8, 8, 1), encoder, None, nnx.Rngs(0))


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the automatic choice differs on GPU/TPU")
def test_training_losses_equal_the_xla_convolutions(tmp_path):
    """Two epochs on digits, each step's loss logged: the matmul layers in the one-scan epoch against
    XLA's convolutions in the unrolled chunks that the CPU gives them."""
    args = ("encoder=conv", "decoder=conv", "trainer.epochs=2", "trainer.log_every=1", "logger.mode=disabled",
            "trainer.progress=off", "snapshot.every=0")
    run(compose_config(*args), tmp_path / "matmul")
    run(compose_config(*args, "encoder.impl=xla", "decoder.impl=xla"), tmp_path / "xla")
    summaries = {name: json.loads((tmp_path / name / "summary.json").read_text()) for name in ("matmul", "xla")}
    assert (summaries["matmul"]["feed"], summaries["xla"]["feed"]) == ("memory", "stream (unrolled)")
    rows = {name: [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
            for name in ("matmul", "xla")}
    losses = {name: [(r["step"], r["train/loss"]) for r in rows[name] if "train/loss" in r] for name in rows}
    assert len(losses["matmul"]) == 24 and [s for s, _ in losses["matmul"]] == [s for s, _ in losses["xla"]]
    assert losses["matmul"][0][1] > 1.1 * losses["matmul"][-1][1]  # it learned: the comparison is not of constants
    for (step, a), (_, b) in zip(losses["matmul"], losses["xla"]):
        assert a == pytest.approx(b, rel=1e-5), step
    assert summaries["matmul"]["val/loss"] == pytest.approx(summaries["xla"]["val/loss"], rel=1e-5)

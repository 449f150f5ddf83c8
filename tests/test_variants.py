"""Each variant does what it claims, checked against hand computations and independent code."""
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import compose_config
from flax import nnx
from scipy.linalg import subspace_angles
from sklearn.decomposition import PCA

from aejax.assemble import assemble, build_model, build_objective
from aejax.data import Dataset, load_dataset
from aejax.tracking import LocalTracker
from aejax.training.loop import fit
from aejax.training.state import count_params
from aejax.variants.terms import gaussian_kl, jacobian_sq_norm, jacobian_sq_norm_estimate

KEY = jax.random.key(0)


def _model(*overrides, shape=(8, 8, 1), output="sigmoid"):
    cfg = compose_config(*overrides, "logger.mode=disabled")
    return cfg, build_model(cfg, shape, output, KEY)


def _train(tmp_path, data, *overrides):
    cfg = compose_config(*overrides, "logger.mode=disabled", "trainer.progress=off")
    tracker = LocalTracker(tmp_path, {})
    result = fit(assemble(cfg, data).parts, data, tracker)
    tracker.finish("finished")
    return result.model, result.summary


def test_the_first_principles_worked_example():
    """w = (1, 0.9) / 1.81, v = (1, 0.9): the projection onto the line x2 = 0.9 x1."""
    _, model = _model("variant=linear", "model.latent_dim=1", shape=(2,), output="identity")
    model.bottleneck.kernel[...] = jnp.array([[1.0], [0.9]]) / 1.81
    model.bottleneck.bias[...] = jnp.zeros(1)
    (layer,) = model.decoder.mlp.layers
    layer.kernel[...] = jnp.array([[1.0, 0.9]])
    layer.bias[...] = jnp.zeros(2)
    x = jnp.array([[2.0, 2.4], [2.0, 1.8]])
    z = model.encode(x)[:, 0]
    assert float(z[0]) == pytest.approx(4.16 / 1.81) and float(z[0]) == pytest.approx(2.298, abs=5e-4)
    squared_error = jnp.sum(jnp.square(model(x) - x), axis=1)
    assert float(squared_error[0]) == pytest.approx(0.199, abs=5e-4)
    assert float(z[1]) == pytest.approx(2.0) and float(squared_error[1]) == pytest.approx(0.0, abs=1e-10)


def test_a_linear_autoencoder_learns_the_principal_subspace(tmp_path):
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(8, 3)))[0]  # a random 3-D subspace of R^8
    def sample(n):
        return (rng.normal(size=(n, 3)) * [3.0, 2.0, 1.5]) @ basis.T + 0.1 * rng.normal(size=(n, 8)) + 0.5
    x_train, x_test = sample(2000).astype(np.float32), sample(500).astype(np.float32)
    data = Dataset("subspace", x_train, None, x_test, None, (), False)  # no labels: nothing to probe
    model, summary = _train(tmp_path, data, "variant=linear", "model.latent_dim=3", "optimizer.lr=3e-2",
                            "optimizer.schedule=cosine", "trainer.epochs=150", "trainer.batch_size=100",
                            "trainer.eval_every=150")
    pca = PCA(3).fit(x_train)
    pca_mse = np.mean((pca.inverse_transform(pca.transform(x_test)) - x_test) ** 2)
    (decoder_layer,) = model.decoder.mlp.layers
    angles = subspace_angles(np.asarray(decoder_layer.kernel[...]).T, pca.components_.T)
    assert np.max(angles) < 0.05
    assert summary["val/loss"] == pytest.approx(pca_mse, rel=0.02)


def test_vae_kl_is_the_monte_carlo_kl_and_vanishes_at_the_prior():
    mean, logvar = jnp.array([[0.5, -1.0, 2.0]]), jnp.array([[0.3, -0.7, 0.0]])
    analytic = float(jnp.sum(gaussian_kl(mean, logvar)))
    std = jnp.exp(0.5 * logvar)
    z = mean + std * jax.random.normal(KEY, (400_000, 3))
    log_q = jnp.sum(-0.5 * jnp.square((z - mean) / std) - jnp.log(std), axis=1)
    log_p = jnp.sum(-0.5 * jnp.square(z), axis=1)
    assert float(jnp.mean(log_q - log_p)) == pytest.approx(analytic, rel=0.01)
    assert float(jnp.sum(gaussian_kl(jnp.zeros((1, 3)), jnp.zeros((1, 3))))) == 0.0


def test_vae_objective_parts():
    cfg, model = _model("variant=vae", "model.latent_dim=3")
    x = jnp.asarray(load_dataset(cfg.dataset).x_train[:16])
    w = jnp.ones(16)
    out = build_objective(cfg.variant)(model, x, w, KEY, jnp.int32(0))
    mean, logvar = model.code_params(model.features(x))
    expected_kl = np.sum(np.asarray(gaussian_kl(mean, logvar)), axis=1) / 64  # nats per value
    np.testing.assert_allclose(out["kl"], expected_kl, rtol=1e-5)
    np.testing.assert_allclose(out["loss"], out["recon"] + out["kl"], rtol=1e-6)  # beta = 1
    beta0 = compose_config("variant=vae", "variant.terms.kl.weight=0", "model.latent_dim=3").variant
    out0 = build_objective(beta0)(model, x, w, KEY, jnp.int32(0))
    np.testing.assert_allclose(out0["loss"], out0["recon"], rtol=0)
    # annealing: beta * step / anneal_steps in training, the full beta in evaluation
    annealed = compose_config("variant=vae", "variant.terms.kl.anneal_steps=100", "model.latent_dim=3").variant
    at_25 = build_objective(annealed)(model, x, w, KEY, jnp.int32(25))
    np.testing.assert_allclose(at_25["loss"], at_25["recon"] + 0.25 * at_25["kl"], rtol=1e-6)
    evaluated = build_objective(annealed)(model, x, w, KEY, None)
    np.testing.assert_allclose(evaluated["loss"], evaluated["recon"] + evaluated["kl"], rtol=1e-6)
    # free bits: each unit's KL counts at least `free_bits` nats in training
    free = compose_config("variant=vae", "variant.terms.kl.free_bits=5", "model.latent_dim=3").variant
    np.testing.assert_allclose(build_objective(free)(model, x, w, KEY, jnp.int32(0))["kl"],
                               np.sum(np.maximum(np.asarray(gaussian_kl(mean, logvar)), 5.0), axis=1) / 64, rtol=1e-5)


def test_denoising_loss_is_against_the_clean_input():
    cfg, model = _model("variant=denoising", "variant.corruption.kind=mask", "variant.corruption.rate=1.0")
    x = jnp.asarray(load_dataset(cfg.dataset).x_train[:8])
    out = build_objective(cfg.variant)(model, x, jnp.ones(8), KEY, jnp.int32(0))
    blank = np.asarray(model(jnp.zeros_like(x)))  # every value masked: the model sees zeros
    np.testing.assert_allclose(out["recon"], np.mean((blank - np.asarray(x)) ** 2, axis=(1, 2, 3)), rtol=1e-5)
    assert not np.allclose(out["recon"], np.mean(blank ** 2, axis=(1, 2, 3)))  # not against the corrupted input


def test_patch_masking_hides_whole_patches_and_can_score_only_them():
    cfg, model = _model("variant=denoising", "variant.corruption.kind=patch", "variant.corruption.rate=0.5",
                        "variant.corruption.patch_size=2", "variant.corruption.loss_on=masked")
    from aejax.variants.corruption import corrupt

    x = jnp.asarray(load_dataset(cfg.dataset).x_train[:8]) + 0.01  # no zeros before masking
    corrupt_key = jax.random.split(KEY, 3)[0]  # the objective corrupts with the first of its three keys
    x_in, mask = corrupt(cfg.variant.corruption, x, corrupt_key)
    mask = np.asarray(mask)[..., 0]
    patches = mask.reshape(8, 4, 2, 4, 2).transpose(0, 1, 3, 2, 4).reshape(8, 16, 4)
    assert np.all(patches.min(-1) == patches.max(-1))  # whole 2x2 patches
    assert np.all(patches[:, :, 0].sum(1) == 8)  # exactly half of the 16 patches per image
    np.testing.assert_array_equal(np.asarray(x_in)[..., 0] == 0, mask == 1)
    out = build_objective(cfg.variant)(model, x, jnp.ones(8), KEY, jnp.int32(0))
    err = (np.asarray(model(x_in)) - np.asarray(x))[..., 0] ** 2
    np.testing.assert_allclose(out["recon"], (err * mask).sum((1, 2)) / mask.sum((1, 2)), rtol=1e-5)


def test_contractive_penalty_is_the_jacobian_norm_and_its_estimate_is_unbiased():
    cfg, model = _model("variant=contractive", "model.latent_dim=3")
    x = jnp.asarray(load_dataset(cfg.dataset).x_train[:4])
    encode = model.encode
    exact = np.asarray(jacobian_sq_norm(encode, x))
    for i in range(4):
        jac = jax.jacfwd(lambda xi: encode(xi[None])[0])(x[i])  # [3, 8, 8, 1], computed independently
        assert exact[i] == pytest.approx(float(jnp.sum(jac ** 2)), rel=1e-5)
    out = build_objective(cfg.variant)(model, x, jnp.ones(4), KEY, jnp.int32(0))
    np.testing.assert_allclose(out["contractive"], exact, rtol=1e-5)
    np.testing.assert_allclose(out["loss"], out["recon"] + 0.1 * out["contractive"], rtol=1e-6)
    estimate = np.asarray(jacobian_sq_norm_estimate(encode, x, KEY, projections=20_000))
    np.testing.assert_allclose(estimate, exact, rtol=0.05)


def _digits_subset():
    d = load_dataset(compose_config("logger.mode=disabled").dataset)
    return Dataset("digits", d.x_train[:512], d.y_train[:512], d.x_test, d.y_test, d.class_names, True)


def _mean_jacobian_norm(model, x):
    return float(jnp.mean(jacobian_sq_norm(model.encode, jnp.asarray(x))))


def test_contractive_training_shrinks_the_jacobian(tmp_path):
    data = _digits_subset()
    args = ("trainer.epochs=30", "trainer.eval_every=30", "optimizer.lr=3e-3")
    plain, _ = _train(tmp_path / "plain", data, *args)
    contracted, _ = _train(tmp_path / "cae", data, "variant=contractive", "variant.terms.contractive.weight=1", *args)
    assert _mean_jacobian_norm(contracted, data.x_test) < 0.5 * _mean_jacobian_norm(plain, data.x_test)


def test_sparse_training_gives_smaller_codes(tmp_path):
    data = _digits_subset()
    args = ("trainer.epochs=30", "trainer.eval_every=30", "optimizer.lr=3e-3", "model.latent_dim=8")
    plain, _ = _train(tmp_path / "plain", data, *args)
    sparse, _ = _train(tmp_path / "sparse", data, "variant=sparse", "variant.terms.l1.weight=0.05", *args)
    x = jnp.asarray(data.x_test)
    assert float(jnp.mean(jnp.abs(sparse.encode(x)))) < 0.5 * float(jnp.mean(jnp.abs(plain.encode(x))))


def test_kl_sparsity_pulls_hidden_rates_towards_the_target(tmp_path):
    data = _digits_subset()
    args = ("trainer.epochs=30", "trainer.eval_every=30", "optimizer.lr=3e-3", "encoder.activation=sigmoid",
            "decoder.activation=relu")
    plain, _ = _train(tmp_path / "plain", data, *args)
    sparse, _ = _train(tmp_path / "sparse", data, "+variant.terms.kl_sparsity={weight:0.5,target:0.05}", *args)
    rate = lambda m: float(jnp.mean(m.features(jnp.asarray(data.x_test))))  # noqa: E731
    assert abs(rate(sparse) - 0.05) < 0.5 * abs(rate(plain) - 0.05)


def test_tied_decoder_owns_only_biases():
    _, untied = _model()
    _, tied = _model("variant=tied")
    n_untied, n_tied = (count_params(nnx.state(m, nnx.Param)) for m in (untied, tied))
    decoder_kernels = 2 * 16 + 16 * 32 + 32 * 64  # 2-16-32-64
    assert n_tied == n_untied - decoder_kernels == 2754
    # the decoder really reads the encoder's kernels: for a fixed code, changing the encoder's first
    # layer changes the tied decoder's output and leaves an untied decoder's alone
    z = jnp.ones((1, 2))
    before_tied, before_untied = tied.decoder(z), untied.decoder(z)
    tied.encoder.mlp.layers[0].kernel[...] *= 2.0
    untied.encoder.mlp.layers[0].kernel[...] *= 2.0
    assert not np.allclose(before_tied, tied.decoder(z))
    np.testing.assert_array_equal(before_untied, untied.decoder(z))


PRESETS = ["vanilla", "sparse", "denoising", "contractive", "vae", "beta_vae", "tied", "linear", "vq_vae", "topk_sae",
           "batchtopk_sae", "jumprelu_sae"]
PAIRS = [("mlp", "mlp"), ("linear", "linear"), ("conv", "conv"), ("mlp", "conv"), ("conv", "mlp")]


def _allowed(variant, encoder, decoder):
    if variant == "tied":
        return encoder == decoder and encoder in ("mlp", "linear")
    if variant == "linear" or variant.endswith("_sae"):
        return (encoder, decoder) == ("linear", "linear")  # the preset picks its own networks
    return True


@pytest.mark.parametrize("variant,encoder,decoder",
                         [(v, e, d) for v in PRESETS for e, d in PAIRS if _allowed(v, e, d)])
def test_every_allowed_combination_trains_and_its_loss_falls(tmp_path, variant, encoder, decoder):
    data = _digits_subset()
    _, summary = _train(tmp_path, data, f"variant={variant}", f"encoder={encoder}", f"decoder={decoder}",
                        "trainer.epochs=4", "trainer.eval_every=4", "trainer.batch_size=32", "optimizer.lr=3e-3")
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert math.isfinite(summary["train/loss"]) and summary["val/loss"] < 0.95 * rows[0]["val/loss"]

"""VAEs of different ``model.latent_dim`` in one batched group: the Gaussian head's mean and
log-variance are padded each in its own block, the padded units sample no noise and stay exactly
zero, and each model's noise is its separate run's draw (one flat draw, each model reading its own
``[B, k]`` out of it), so every job equals its basic-launcher run to 1e-5: rows, parameters,
optimizer state and the VAE's evaluation (ELBO, IWAE, active units)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import compose_config, run_cli
from interrupted import final_params, rows, summary
from test_batched_padding import _check_against_separate, _equal_trees, _keys, _setup, _train_group

from aejax.assemble import build_objective
from aejax.batching.grouping import signature
from aejax.training.state import create_train_state
from aejax.variants.objective import gaussian_noise


@pytest.mark.parametrize("batch, k, width", [(16, 2, 5), (128, 3, 64), (7, 1, 2), (5, 4, 4)])
def test_the_flat_draw_gives_a_code_of_k_units_its_separate_runs_noise(batch, k, width):
    key = jax.random.fold_in(jax.random.key(3), 7)
    alone = np.asarray(jax.random.normal(key, (batch, k)))  # what the separate run draws
    padded = np.asarray(jax.jit(gaussian_noise, static_argnums=1)(key, (batch, width), jnp.float32(k)))
    assert np.array_equal(padded[:, :k], alone) and np.all(padded[:, k:] == 0)
    # the premise: a value of a draw depends only on the key and its flat index
    assert jax.config.jax_threefry_partitionable
    np.testing.assert_array_equal(np.asarray(jax.random.normal(key, (batch * width,)))[:batch * k], alone.reshape(-1))


def test_under_vmap_each_model_gets_its_own_draw():
    keys, sizes = jax.random.split(jax.random.key(0), 3), jnp.array([1.0, 3.0, 4.0])
    noise = jax.vmap(lambda key, k: gaussian_noise(key, (8, 4), k))(keys, sizes)
    for i, k in enumerate((1, 3, 4)):
        np.testing.assert_array_equal(np.asarray(noise[i, :, :k]), np.asarray(jax.random.normal(keys[i], (8, k))))
        assert np.all(np.asarray(noise[i, :, k:]) == 0)


def test_a_padded_vae_trains_as_its_unpadded_twin_and_its_padding_stays_zero():
    # free bits on: the padded units' KL (0) must not be lifted to them
    cfgs, models, txs, members, group_tx = _setup(extra=("variant=vae", "variant.terms.kl.free_bits=0.05"))
    objective = build_objective(cfgs[0].variant)
    init_key, state_key = _keys()
    first, group, metrics = _train_group(members, objective, group_tx, init_key, state_key)

    # the mean's units and the log-variance's keep their places: [mean_2, 0 0 0, logvar_2, 0 0 0]
    _, start = create_train_state(models[0], txs[0], init_key[0], state_key[0])
    own_kernel = np.asarray(start.params["bottleneck"]["kernel"][...])
    kernel = np.asarray(first.params["bottleneck"]["kernel"][...][0])
    assert kernel.shape == (12, 10)
    np.testing.assert_array_equal(kernel[:, 0:2], own_kernel[:, 0:2])
    np.testing.assert_array_equal(kernel[:, 5:7], own_kernel[:, 2:4])

    kernel = np.asarray(group.params["bottleneck"]["kernel"][...][0])
    bias = np.asarray(group.params["bottleneck"]["bias"][...][0])
    assert np.all(kernel[:, 2:5] == 0) and np.all(kernel[:, 7:] == 0) and np.all(bias[2:5] == 0) and np.all(bias[7:] == 0)
    assert np.any(kernel[:, :2] != 0) and np.any(kernel[:, 5:7] != 0)
    decoder_in = np.asarray(group.params["decoder"]["mlp"]["layers"][0]["kernel"][...][0])
    assert decoder_in.shape == (5, 12) and np.all(decoder_in[2:] == 0) and np.any(decoder_in[:2] != 0)
    # all of the padding, Adam's moments too, is zero: widening each model's own state gives the group's
    _equal_trees(members.stack([members.own(group, i) for i in range(2)]), group, exact=True)
    _check_against_separate(members, models, txs, objective, group, metrics, init_key, state_key,
                            ("loss", "recon", "kl"))


def test_vaes_of_different_code_sizes_share_a_signature():
    a, b = (compose_config("variant=vae", f"model.latent_dim={k}") for k in (2, 8))
    assert signature(a) == signature(b)
    # a contractive term's `auto` estimator is exact up to exact_max units: a group keeps to one side of it
    small, large = (compose_config("variant=vae", f"model.latent_dim={k}", "+variant.terms.contractive.weight=0.1",
                                   "+variant.terms.contractive.exact_max=4") for k in (2, 8))
    assert signature(small) != signature(large)
    assert signature(small) == signature(compose_config("variant=vae", "model.latent_dim=3",
                                                        "+variant.terms.contractive.weight=0.1",
                                                        "+variant.terms.contractive.exact_max=4"))


SMALL = ("encoder.hidden=[16]", "decoder.hidden=[16]", "trainer.epochs=2", "snapshot.every=1", "snapshot.images=false",
         "eval.probe_examples=300", "eval.iwae_examples=100", "eval.iwae_samples=8", "logger.mode=disabled",
         "trainer.progress=off")
GRID = ("variant=vae", "model.latent_dim=2,4", "seed=0,1")


def test_a_vae_grid_over_code_sizes_trains_as_one_program_and_equals_its_basic_launcher_runs(tmp_path):
    batched = run_cli("-m", "hydra/launcher=aejax_batched", *GRID, *SMALL, f"hydra.sweep.dir={tmp_path / 'batched'}",
                      cwd=tmp_path)
    assert batched.returncode == 0, batched.stderr
    assert "jobs #0, #1, #2, #3 train as one program of 4 models" in batched.stderr
    basic = run_cli("-m", *GRID, *SMALL, f"hydra.sweep.dir={tmp_path / 'basic'}", cwd=tmp_path)
    assert basic.returncode == 0, basic.stderr
    losses = set()
    for job in map(str, range(4)):
        ours, theirs = tmp_path / "batched" / job, tmp_path / "basic" / job
        s, t = summary(ours), summary(theirs)
        assert s["status"] == t["status"] == "finished" and s["batched_group"] == 4
        assert s["num_params"] == t["num_params"] and s["test/active_units"] == t["test/active_units"]
        for key in ("val/loss", "train/loss", "test/mse", "test/bce", "test/elbo", "test/iwae_nll"):
            np.testing.assert_allclose(s[key], t[key], rtol=1e-5, err_msg=f"job {job}: {key}")
        a, b = rows(ours), rows(theirs)
        assert [r["step"] for r in a] == [r["step"] for r in b] and len(a) == 3
        for x, y in zip(a, b):
            assert x.keys() == y.keys()
            np.testing.assert_allclose([x[k] for k in sorted(x)], [y[k] for k in sorted(y)], rtol=1e-5, atol=1e-6,
                                       err_msg=f"job {job}, step {x['step']}")
        for x, y in zip(final_params(ours), final_params(theirs), strict=True):  # its own (unpadded) state
            assert x.shape == y.shape
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5, err_msg=f"job {job}: final state")
        with np.load(ours / "snapshots" / "step_0000024.npz") as x, np.load(theirs / "snapshots" / "step_0000024.npz") as y:
            np.testing.assert_allclose(x["z"], y["z"], rtol=1e-5, atol=1e-5, err_msg=f"job {job}: codes")
        losses.add(s["val/loss"])
    assert len(losses) == 4

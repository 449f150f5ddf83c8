"""A batched sweep's padding: a model whose code is zero-padded to a larger group trains exactly as
its unpadded twin (the padded weights get a zero gradient and stay zero), and its own view of the
group's state is the separate run's state, for Adam with gradient clipping and for SGD."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import compose_config

from aejax.assemble import build_model, build_objective, build_optimizer
from aejax.batching.objective import Overlay
from aejax.batching.members import Members, per_model
from aejax.training.state import create_train_state, split_seed
from aejax.training.step import make_train_step

STEPS = 6


def _setup(optimizer: str, ks=(2, 5), lrs=(3e-3, 1e-2)):
    cfgs = [compose_config(f"model.latent_dim={k}", f"optimizer={optimizer}", f"optimizer.lr={lr}",
                           "optimizer.grad_clip=0.5", "encoder.hidden=[12]", "decoder.hidden=[12]")
            for k, lr in zip(ks, lrs)]
    models = [lambda key, c=c: build_model(c, (10,), "sigmoid", key) for c in cfgs]
    txs = [build_optimizer(c.optimizer, 100)[0] for c in cfgs]
    values = [{"lr": lr, "grad_clip": 0.5} for lr in lrs]
    group_tx = per_model(lambda v: build_optimizer(Overlay(cfgs[-1].optimizer, v), 100)[0], values[-1])
    members = Members(seeds=[0, 1], models=models, txs=txs, values=values, schedules=[None, None],
                      latent_dims=list(ks), configs=[{}, {}], template=models[-1], tx=group_tx)
    return cfgs, models, txs, members, group_tx


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_padded_model_trains_as_its_unpadded_twin(optimizer):
    cfgs, models, txs, members, group_tx = _setup(optimizer)
    objective = build_objective(cfgs[0].variant)
    x = jax.random.uniform(jax.random.key(9), (STEPS, 16, 10))
    w = jnp.ones(16)
    keys = [split_seed(s, 4) for s in (0, 1)]
    init_key, state_key = jnp.stack([k[0] for k in keys]), jnp.stack([k[2] for k in keys])

    graphdef, group = members.init(init_key, state_key)
    group_step = jax.jit(jax.vmap(make_train_step(graphdef, objective, group_tx), in_axes=(0, None, None)))
    for i in range(STEPS):
        group, metrics = group_step(group, x[i], w)

    # the padded units of model 0 (k=2 in a group of k=5): its code width in the bottleneck, its rows in the decoder
    bottleneck = np.asarray(group.params["bottleneck"]["kernel"][...][0])
    assert bottleneck.shape == (12, 5) and np.all(bottleneck[:, 2:] == 0) and np.any(bottleneck[:, :2] != 0)
    assert np.all(np.asarray(group.params["bottleneck"]["bias"][...][0][2:]) == 0)
    first_decoder = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(group.params)
                     if "decoder" in jax.tree_util.keystr(path) and leaf.shape[-2:] == (5, 12)]
    assert first_decoder and np.all(np.asarray(first_decoder[0][0])[2:] == 0)

    for i, (model, tx) in enumerate(zip(models, txs)):  # each model against its separate training
        g, alone = create_train_state(model, tx, init_key[i], state_key[i])
        step = jax.jit(make_train_step(g, objective, tx))
        for s in range(STEPS):
            alone, m = step(alone, x[s], w)
        own = members.own(group, i)
        assert jax.tree.structure(own) == jax.tree.structure(alone)  # the separate run's checkpoint layout
        for a, b in zip(jax.tree.leaves(own), jax.tree.leaves(alone)):
            if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
                a, b = jax.random.key_data(a), jax.random.key_data(b)
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(metrics["loss"][i], m["loss"], rtol=1e-5)
    # the two models did train differently (their own lr and code size)
    assert not np.isclose(metrics["loss"][0], metrics["loss"][1])


def test_widen_is_the_inverse_of_own():
    _, _, _, members, _ = _setup("adam")
    keys = [split_seed(s, 4) for s in (3, 4)]
    _, group = members.init(jnp.stack([k[0] for k in keys]), jnp.stack([k[2] for k in keys]))
    again = members.stack([members.own(group, i) for i in range(2)])
    for a, b in zip(jax.tree.leaves(again), jax.tree.leaves(group)):
        if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        assert a.shape == b.shape and np.array_equal(np.asarray(a), np.asarray(b))
    assert float(group.opt_state.values["lr"][0]) == pytest.approx(3e-3)
    assert float(group.opt_state.values["lr"][1]) == pytest.approx(1e-2)


def test_a_group_is_cut_into_even_programs_that_fit_the_budget():
    from aejax.batching.grouping import split

    assert split(12, per_model=100, budget=10_000, max_models=None) == [12]
    assert split(12, per_model=100, budget=500, max_models=None) == [4, 4, 4]  # 5 fit: 3 programs, even
    assert split(7, per_model=100, budget=10_000, max_models=3) == [3, 2, 2]
    assert split(3, per_model=10_000, budget=500, max_models=None) == [1, 1, 1]  # not one fits: one at a time
    # spread over 4 devices (trainer.parallel=sharded): each device holds 5, so programs of up to 20
    assert split(30, per_model=100, budget=500, max_models=None, devices=4) == [15, 15]
    assert split(30, per_model=100, budget=500, max_models=12, devices=4) == [10, 10, 10]

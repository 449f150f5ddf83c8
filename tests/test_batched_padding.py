"""A batched sweep's padding: a model whose code is zero-padded to a larger group trains exactly as
its unpadded twin (the padded weights get a zero gradient and stay zero), and its own view of the
group's state is the separate run's state, for Adam with gradient clipping and for SGD."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import compose_config

from aejax.assemble import build_model, build_objective, build_optimizer
from aejax.batching.objective import CODE_SIZE, Overlay
from aejax.batching.members import Members, per_model
from aejax.training.state import create_train_state, split_seed
from aejax.training.step import make_train_step

STEPS = 6


def _setup(optimizer: str = "adam", ks=(2, 5), lrs=(3e-3, 1e-2), extra=()):
    """Two models of code sizes ``ks`` as a group (``extra``: overrides of both); each one's code size
    rides with its values, as a group of different sizes carries it."""
    cfgs = [compose_config(f"model.latent_dim={k}", f"optimizer={optimizer}", f"optimizer.lr={lr}",
                           "optimizer.grad_clip=0.5", "encoder.hidden=[12]", "decoder.hidden=[12]", *extra)
            for k, lr in zip(ks, lrs)]
    models = [lambda key, c=c: build_model(c, (10,), "sigmoid", key) for c in cfgs]
    txs = [build_optimizer(c.optimizer, 100)[0] for c in cfgs]
    values = [{"lr": lr, "grad_clip": 0.5, CODE_SIZE: k} for k, lr in zip(ks, lrs)]
    group_tx = per_model(lambda v: build_optimizer(Overlay(cfgs[-1].optimizer, v), 100)[0], values[-1])
    members = Members(seeds=[0, 1], models=models, txs=txs, values=values, schedules=[None, None],
                      latent_dims=list(ks), configs=[{}, {}], template=models[-1], tx=group_tx)
    return cfgs, models, txs, members, group_tx


def _keys(seeds=(0, 1)):
    """Each model's initialisation and state keys, as a run draws them from its seed."""
    keys = [split_seed(s, 4) for s in seeds]
    return jnp.stack([k[0] for k in keys]), jnp.stack([k[2] for k in keys])


X, W = jax.random.uniform(jax.random.key(9), (STEPS, 16, 10)), jnp.ones(16)


def _train_group(members, objective, group_tx, init_key, state_key):
    """The group's first state, and its state and metrics after ``STEPS`` steps."""
    graphdef, group = members.init(init_key, state_key)
    first = group
    group_step = jax.jit(jax.vmap(members.train_step(graphdef, objective, group_tx), in_axes=(0, None, None)))
    for i in range(STEPS):
        group, metrics = group_step(group, X[i], W)
    return first, group, metrics


def _equal_trees(a, b, exact: bool = False):
    assert jax.tree.structure(a) == jax.tree.structure(b)  # the separate run's checkpoint layout
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        if exact:
            assert x.shape == y.shape and np.array_equal(np.asarray(x), np.asarray(y))
        else:
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)


def _check_against_separate(members, models, txs, objective, group, metrics, init_key, state_key, names=("loss",)):
    """Each model's own view of the group's state and its metrics against its separate training."""
    for i, (model, tx) in enumerate(zip(models, txs)):
        g, alone = create_train_state(model, tx, init_key[i], state_key[i])
        step = jax.jit(make_train_step(g, objective, tx))
        for s in range(STEPS):
            alone, m = step(alone, X[s], W)
        _equal_trees(members.own(group, i), alone)
        for name in names:
            np.testing.assert_allclose(metrics[name][i], m[name], rtol=1e-5, err_msg=name)
    # the two models did train differently (their own lr and code size)
    assert not np.isclose(metrics["loss"][0], metrics["loss"][1])


@pytest.mark.parametrize("optimizer,extra", [("adam", ()), ("sgd", ()), ("adam", ("variant=sparse",))],
                         ids=["adam", "sgd", "sparse-l1"])
def test_a_padded_model_trains_as_its_unpadded_twin(optimizer, extra):
    """(The sparse variant's l1 term is a mean over the code's units: a padded model's is over its own.)"""
    cfgs, models, txs, members, group_tx = _setup(optimizer, extra=extra)
    objective = build_objective(cfgs[0].variant)
    init_key, state_key = _keys()
    _, group, metrics = _train_group(members, objective, group_tx, init_key, state_key)

    # the padded units of model 0 (k=2 in a group of k=5): its code width in the bottleneck, its rows in the decoder
    bottleneck = np.asarray(group.params["bottleneck"]["kernel"][...][0])
    assert bottleneck.shape == (12, 5) and np.all(bottleneck[:, 2:] == 0) and np.any(bottleneck[:, :2] != 0)
    assert np.all(np.asarray(group.params["bottleneck"]["bias"][...][0][2:]) == 0)
    first_decoder = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(group.params)
                     if "decoder" in jax.tree_util.keystr(path) and leaf.shape[-2:] == (5, 12)]
    assert first_decoder and np.all(np.asarray(first_decoder[0][0])[2:] == 0)
    _check_against_separate(members, models, txs, objective, group, metrics, init_key, state_key,
                            names=("loss", "l1") if extra else ("loss",))


def test_widen_is_the_inverse_of_own():
    _, _, _, members, _ = _setup("adam")
    _, group = members.init(*_keys((3, 4)))
    _equal_trees(members.stack([members.own(group, i) for i in range(2)]), group, exact=True)
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

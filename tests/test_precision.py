"""Mixed precision: ``model.dtype=bfloat16`` computes in bf16 with float32 parameters and state."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from conftest import compose_config

from aejax.assemble import build_model, build_objective, build_optimizer
from aejax.data import load_dataset
from aejax.errors import ConfigError
from aejax.training.epoch import make_epoch_fn, make_eval_fn, pad_to_chunks
from aejax.training.state import create_train_state
from aejax.training.step import make_train_step

# A bf16 run's final test loss stays within this fraction of the float32 run's (measured on
# digits, 30 epochs, 3 seeds: within 0.9%; bf16 keeps 8 bits of mantissa in the matmuls only).
TOLERANCE = 0.05


def _float_leaves(tree):
    return [x for x in jax.tree_util.tree_leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]


def _eqns(jaxpr):
    """Every equation, including those of nested jaxprs (jit, custom_jvp, ...)."""
    for eqn in jaxpr.eqns:
        yield eqn
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from _eqns(inner)


def _matmul_input_dtypes(model, x) -> set[str]:
    jaxpr = jax.make_jaxpr(lambda x: model(x))(x).jaxpr
    return {str(v.aval.dtype) for e in _eqns(jaxpr) if e.primitive.name in ("dot_general", "conv_general_dilated")
            for v in e.invars}


@pytest.mark.parametrize("overrides,shape", [
    ((), (64,)),
    (("encoder.hidden=[128,32]",), (784,)),
    (("encoder=conv", "decoder=conv"), (28, 28, 1)),
    (("variant=tied",), (64,)),
    (("variant=vae", "encoder.norm=layer", "decoder.norm=rms"), (64,)),
])
def test_bf16_computes_in_bf16_and_returns_float32(overrides, shape):
    cfg = compose_config(*overrides, "model.dtype=bfloat16", "logger.mode=disabled")
    model = build_model(cfg, shape, "sigmoid", jax.random.key(0))
    x = jnp.ones((4, *shape))
    assert _matmul_input_dtypes(model, x) == {"bfloat16"}  # every matmul / convolution
    assert model.features(x).dtype == jnp.bfloat16  # an intermediate activation
    assert model.decoder(model.encode(x)).dtype == jnp.bfloat16
    assert model.encode(x).dtype == jnp.float32  # codes, logits and outputs are float32
    assert model.decode_logits(model.encode(x)).dtype == jnp.float32
    assert model(x).dtype == jnp.float32
    params = _float_leaves(nnx.state(model, nnx.Param))
    assert params and {leaf.dtype for leaf in params} == {jnp.dtype(jnp.float32)}


def test_float32_default_has_no_bf16_anywhere():
    cfg = compose_config("logger.mode=disabled")
    assert cfg.model.dtype == "float32"
    model = build_model(cfg, (64,), "sigmoid", jax.random.key(0))
    assert _matmul_input_dtypes(model, jnp.ones((4, 64))) == {"float32"}


def test_unknown_dtype_is_a_config_error():
    with pytest.raises(ConfigError, match="model.dtype"):
        compose_config("model.dtype=float16", "logger.mode=disabled")


def _train(dtype: str, epochs: int, seed: int = 0):
    cfg = compose_config(f"model.dtype={dtype}", "logger.mode=disabled")
    data = load_dataset(cfg.dataset)
    tx, _ = build_optimizer(cfg.optimizer, 1000)
    graphdef, state = create_train_state(lambda k: build_model(cfg, data.example_shape, "sigmoid", k), tx,
                                         jax.random.key(seed), jax.random.key(1))
    initial = state
    objective = build_objective(cfg.variant)
    epoch = make_epoch_fn(make_train_step(graphdef, objective, tx), cfg.trainer.batch_size, False)
    x = jnp.asarray(data.x_train)
    losses = []
    for e in range(epochs):
        state, metrics = epoch(state, x, jax.random.key(e))
        losses.append(float(np.sum(metrics["loss"] * metrics["count"]) / np.sum(metrics["count"])))
    chunks, weights = pad_to_chunks(data.x_test, 1024)
    test_loss = float(make_eval_fn(graphdef, objective)(state.params, chunks, weights, jax.random.key(0))["loss"])
    return initial, state, losses, test_loss


def test_bf16_training_keeps_float32_state_and_matches_float32_loss():
    initial, state, losses, test_bf16 = _train("bfloat16", 30)
    for tree in (initial.params, initial.opt_state, state.params, state.opt_state):
        assert _float_leaves(tree) and {leaf.dtype for leaf in _float_leaves(tree)} == {jnp.dtype(jnp.float32)}
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0]  # it learns: 0.178 -> ~0.059 on digits
    _, _, losses_f32, test_f32 = _train("float32", 30)
    assert abs(test_bf16 / test_f32 - 1) < TOLERANCE
    assert abs(losses[-1] / losses_f32[-1] - 1) < TOLERANCE

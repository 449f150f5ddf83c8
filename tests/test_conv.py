"""The conv encoder/decoder: exact shapes, parameter counts, mirroring, config errors, learning.

Structural tests build and run the networks abstractly (``nnx.eval_shape``: real JAX shape
inference, no parameter initialization or compilation), which keeps them fast on CPU; the
learning test trains real parameters.
"""
from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from omegaconf import OmegaConf
from sklearn.datasets import load_digits

import aejax.models.conv  # noqa: F401  (registration)
import aejax.models.mlp  # noqa: F401  (registration)
from aejax.errors import ConfigError
from aejax.models.contract import DECODERS, ENCODERS
from aejax.models.conv import ConvDecoder, ConvDecoderConfig, ConvEncoderConfig
from aejax.models.mlp import MLPDecoderConfig, MLPEncoderConfig

CONF = Path(__file__).resolve().parents[1] / "conf"


def conv_enc(**kw):
    return OmegaConf.structured(ConvEncoderConfig(**kw))


def conv_dec(**kw):
    return OmegaConf.structured(ConvDecoderConfig(**kw))


def mlp_enc(**kw):
    return OmegaConf.structured(MLPEncoderConfig(**kw))


def mlp_dec(**kw):
    return OmegaConf.structured(MLPDecoderConfig(**kw))


def build(enc_cfg, dec_cfg, shape, latent_dim=2, seed=0):
    """Encoder, bottleneck and decoder through the registries, with the decoder contract's signature."""
    rngs = nnx.Rngs(seed)
    encoder = ENCODERS[enc_cfg.name].builder(enc_cfg, shape, rngs)
    bottleneck = nnx.Linear(encoder.features, latent_dim, rngs=rngs)
    decoder = DECODERS[dec_cfg.name].builder(dec_cfg, latent_dim, shape, encoder, bottleneck, rngs)
    return encoder, bottleneck, decoder


def abstract(*args, **kw):
    return nnx.eval_shape(lambda: build(*args, **kw))


def n_params(module) -> int:
    return sum(x.size for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3), (8, 8, 1)])
@pytest.mark.parametrize("pair", ["conv-conv", "conv-mlp", "mlp-conv", "dense"])
def test_round_trip_shapes(shape, pair):
    enc_cfg, dec_cfg = {
        "conv-conv": (conv_enc(), conv_dec()),
        "conv-mlp": (conv_enc(), mlp_dec(hidden=[16])),
        "mlp-conv": (mlp_enc(hidden=[16]), conv_dec()),
        "dense": (conv_enc(dense=24), conv_dec()),
    }[pair]

    def run():
        encoder, bottleneck, decoder = build(enc_cfg, dec_cfg, shape)
        h = encoder(jnp.ones((3, *shape)))
        return encoder, h, decoder(bottleneck(h))

    encoder, h, out = nnx.eval_shape(run)
    assert isinstance(encoder.features, int) and h.shape == (3, encoder.features)
    assert out.shape == (3, *shape)


def test_parameter_counts_match_hand_computation():
    # 4x4 kernels: each (transposed) conv has 16*cin*cout weights + cout biases. 8x8 -> 4x4 -> 2x2.
    encoder, bottleneck, decoder = abstract(conv_enc(channels=[4, 8]), conv_dec(), (8, 8, 1), latent_dim=3)
    assert encoder.features == 2 * 2 * 8
    assert n_params(encoder) == (16 * 1 * 4 + 4) + (16 * 4 * 8 + 8)
    assert n_params(bottleneck) == 32 * 3 + 3
    # Linear 3 -> 2*2*8, then transposed convs 8 -> 4 -> 1.
    assert n_params(decoder) == (3 * 32 + 32) + (16 * 8 * 4 + 4) + (16 * 4 * 1 + 1)
    # Dense layers on both sides: 32 -> 5 in the encoder; 3 -> 5 -> 32 in the (mirrored) decoder.
    encoder, _, decoder = abstract(conv_enc(channels=[4, 8], dense=5), conv_dec(), (8, 8, 1), latent_dim=3)
    assert encoder.features == 5
    assert n_params(encoder) == (16 * 1 * 4 + 4) + (16 * 4 * 8 + 8) + (32 * 5 + 5)
    assert n_params(decoder) == (3 * 5 + 5) + (5 * 32 + 32) + (16 * 8 * 4 + 4) + (16 * 4 * 1 + 1)


def test_default_conv_autoencoder_size_at_28x28():
    encoder, bottleneck, decoder = abstract(conv_enc(), conv_dec(), (28, 28, 1), latent_dim=2)
    assert encoder.features == 7 * 7 * 64
    assert n_params(encoder) == (16 * 32 + 32) + (16 * 32 * 64 + 64) == 33_376
    assert n_params(bottleneck) == 3136 * 2 + 2 == 6_274
    assert n_params(decoder) == (2 * 3136 + 3136) + (16 * 64 * 32 + 32) + (16 * 32 + 1) == 42_721


def test_mirror_rule():
    encoder, _, decoder = abstract(conv_enc(channels=[8, 16, 24], dense=12), conv_dec(), (16, 16, 2))
    assert isinstance(decoder, ConvDecoder)
    assert [d.in_features for d in decoder.deconvs] == [24, 16, 8]
    assert [d.out_features for d in decoder.deconvs] == [16, 8, 2]
    assert decoder.start == (2, 2, 24) and decoder.dense.out_features == 12
    # Explicit values win; dense 0 means none; a non-conv encoder gives the [64, 32] default.
    _, _, decoder = abstract(conv_enc(channels=[8, 16, 24]), conv_dec(channels=[5], dense=0), (16, 16, 2))
    assert [d.in_features for d in decoder.deconvs] == [5] and decoder.dense is None
    assert decoder.start == (8, 8, 5)
    _, _, decoder = abstract(mlp_enc(hidden=[16]), conv_dec(), (8, 8, 1))
    assert [d.in_features for d in decoder.deconvs] == [64, 32] and decoder.dense is None


@pytest.mark.parametrize("shape", [(2,), (64,), (8, 8)])
def test_non_images_are_config_errors(shape):
    with pytest.raises(ConfigError, match=r"^encoder\.name: the conv encoder needs images of shape HxWxC") as e:
        abstract(conv_enc(), mlp_dec(hidden=[4]), shape)
    assert e.value.key == "encoder.name" and str(shape) in str(e.value)
    with pytest.raises(ConfigError, match=r"^decoder\.name: the conv decoder needs images of shape HxWxC") as e:
        abstract(mlp_enc(hidden=[4]), conv_dec(), shape)
    assert e.value.key == "decoder.name" and str(shape) in str(e.value)


def test_sizes_that_do_not_fit_are_config_errors():
    with pytest.raises(ConfigError, match=r"^decoder\.channels: 2 stride-2 stages need H and W divisible by 4; "
                                          r"got 30x30 \(at most 1 stages fit"):
        abstract(conv_enc(), conv_dec(), (30, 30, 1))
    with pytest.raises(ConfigError, match=r"4 stride-2 stages need H and W divisible by 16; got 8x8"):
        abstract(mlp_enc(hidden=[4]), conv_dec(channels=[8, 8, 8, 8]), (8, 8, 1))
    with pytest.raises(ConfigError, match=r"divisible by 4; got 28x30"):
        abstract(mlp_enc(hidden=[4]), conv_dec(), (28, 30, 1))
    # The encoder alone accepts any size (SAME padding rounds up): 30 -> 15 -> 8.
    assert abstract(conv_enc(), mlp_dec(hidden=[4]), (30, 30, 1))[0].features == 8 * 8 * 64


@pytest.mark.parametrize("key,enc,dec", [
    ("encoder.channels", conv_enc(channels=[8, 0]), conv_dec()),
    ("encoder.channels", conv_enc(channels=[]), conv_dec()),
    ("encoder.dense", conv_enc(dense=0), conv_dec()),
    ("encoder.activation", conv_enc(activation="nope"), conv_dec()),
    ("decoder.channels", conv_enc(), conv_dec(channels=[-1])),
    ("decoder.dense", conv_enc(), conv_dec(dense=-2)),
    ("decoder.activation", conv_enc(), conv_dec(activation="nope")),
])
def test_bad_values_name_the_key(key, enc, dec):
    with pytest.raises(ConfigError) as e:
        abstract(enc, dec, (8, 8, 1))
    assert e.value.key == key and str(e.value).startswith(key + ":")


def test_yaml_matches_schema():
    cfgs = {}
    for group, schema in (("encoder", ConvEncoderConfig), ("decoder", ConvDecoderConfig)):
        text = (CONF / group / "conv.yaml").read_text()
        assert text.startswith("# ")
        cfgs[group] = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.create(text))  # unknown keys fail
        assert cfgs[group] == OmegaConf.structured(schema)  # the YAML carries the schema's defaults
    assert abstract(cfgs["encoder"], cfgs["decoder"], (28, 28, 1))[0].features == 7 * 7 * 64


def test_conv_autoencoder_learns_digits():
    x = jnp.asarray((load_digits().data[:512] / 16.0).astype(np.float32).reshape(-1, 8, 8, 1))

    class AE(nnx.Module):
        def __init__(self):
            self.encoder, self.bottleneck, self.decoder = build(conv_enc(channels=[16, 32]), conv_dec(),
                                                                (8, 8, 1), latent_dim=8)

        def __call__(self, x):
            return jax.nn.sigmoid(self.decoder(self.bottleneck(self.encoder(x))))

    graphdef, params = nnx.split(AE())
    tx = optax.adam(3e-3)
    opt_state = tx.init(params)

    def loss_fn(params, xb):
        return jnp.mean((nnx.merge(graphdef, params)(xb) - xb) ** 2)

    @jax.jit
    def step(params, opt_state, xb):
        loss, grads = jax.value_and_grad(loss_fn)(params, xb)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    initial = float(jax.jit(loss_fn)(params, x))
    for i in range(300):
        params, opt_state, _ = step(params, opt_state, x[(i % 4) * 128:(i % 4 + 1) * 128])
    final = float(jax.jit(loss_fn)(params, x))
    assert final < 0.6 * initial, (initial, final)

"""Bad input is refused before anything is compiled or written, with the key named."""
import pytest
from conftest import compose_config

from aejax.errors import ConfigError
from aejax.experiment import run


@pytest.mark.parametrize("override,message", [
    ("+trainer.bogus=1", "trainer.bogus: unknown key; trainer takes: epochs, batch_size, "),  # docs/bad-input.md
    ("optimizer.lr=fast", "optimizer.lr: Value 'fast' of type 'str' could not be converted to Float"),
    ("optimizer.lr=-1", "optimizer.lr: must be > 0"),
    ("model.latent_dim=-3", "model.latent_dim: must be > 0"),
    ("trainer.epochs=0", "trainer.epochs: must be > 0"),
    ("logger.mode=sometimes", "logger.mode: must be one of auto, online, offline, disabled"),
    ("variant.recon=l1", "variant.recon: must be one of mse, bce"),
    ("model.output=tanh", "model.output: must be one of"),
    ("encoder.name=resnet", "unknown encoder 'resnet'; known: conv, linear, mlp"),
    ("+nonsense=1", "nonsense: unknown top-level key"),
    ("optimizer.schedule=step", "optimizer.schedule"),
    ("optimizer.grad_clip=0", "optimizer.grad_clip: must be > 0"),
    ("+variant.terms.kl.weight=1", "variant.terms.kl: the KL term needs a Gaussian code"),
    ("+variant.terms.kl_sparsity.weight=1", "variant.terms.kl_sparsity: needs hidden activations in (0, 1)"),
    ("+variant.terms.nope.weight=1", "variant.terms.nope: unknown term; known: auxk, commitment, contractive, kl, kl_sparsity, l0, l1"),
    ("+variant.terms.l1.wieght=1", "variant.terms.l1.wieght: unknown key; variant.terms.l1 takes: weight"),
    ("variant.corruption={kind:mask,rate:1.5}", "variant.corruption.rate: must be in [0, 1]"),
    ("variant.head=bayesian", "variant.head: must be one of deterministic, gaussian"),
    ("trainer.parallel=dp", "trainer.parallel: must be one of auto, none, sharded, pmap; got 'dp'"),
    ("+variant.code=sparse", "variant.code: must be one of dense, topk, batchtopk, jumprelu, vq; got 'sparse'"),
    ("+variant.terms.auxk.weight=1", "variant.terms.auxk: needs variant.code=topk or batchtopk or jumprelu, got dense"),
])
def test_validation_names_the_bad_key(override, message):
    with pytest.raises(ConfigError, match=None) as err:
        compose_config(override)
    assert message in str(err.value)


@pytest.mark.parametrize("overrides,message", [
    (("dataset=line2d", "variant.recon=bce"), "variant.recon: bce needs data in [0, 1]"),
    (("dataset=line2d", "model.output=sigmoid"), "model.output: a sigmoid output cannot fit line2d"),
    (("encoder.activation=swish",), "encoder.activation: unknown activation 'swish'"),
    (("encoder.hidden=[32,0]",), "encoder.hidden: widths must be > 0"),
    (("optimizer.warmup_steps=5000",), "optimizer.warmup_steps: must be in [0, 1200)"),
    (("trainer.batch_size=2000",), "trainer.batch_size: 2000 is larger than the 1437 training examples"),
    (("encoder=conv", "dataset=line2d"), "encoder.name: the conv encoder needs images of shape HxWxC; got (2,)"),
    (("variant=tied", "encoder=conv"), "decoder.tied: tied weights need an mlp or linear encoder"),
    (("decoder=conv", "decoder.channels=[8,8,8,8]"), "decoder.channels: 4 stride-2 stages need H and W divisible by 16"),
    (("variant=vae", "dataset=layers3d"), "variant.recon: bce needs data in [0, 1]"),
    (("variant=denoising", "variant.corruption.kind=salt_pepper", "dataset=line2d"), "salt_pepper sets values to 0 or 1"),
])
def test_checks_that_need_the_data_run_before_anything_is_written(tmp_path, overrides, message):
    with pytest.raises(ConfigError) as err:
        run(compose_config(*overrides, "logger.mode=disabled"), tmp_path)
    assert message in str(err.value)
    assert not any(tmp_path.iterdir())


def test_the_decoder_mirrors_the_encoder_and_overrides_reach_every_group():
    cfg = compose_config("encoder.hidden=[128,32]", "model.latent_dim=8", "trainer.epochs=20",
                         "optimizer.lr=3e-3", "seed=1", "logger.mode=disabled")
    assert (cfg.model.latent_dim, cfg.trainer.epochs, cfg.optimizer.lr, cfg.seed) == (8, 20, 3e-3, 1)
    assert cfg.decoder.hidden is None and list(cfg.encoder.hidden) == [128, 32]
    assert cfg.logger.name == "vanilla-z8-s1"  # resolved from the run's own values
    assert isinstance(cfg.trainer.batch_size, int) and isinstance(cfg.optimizer.lr, float)


def test_the_bowtie_is_one_override_away():
    """784-128-32-2-32-128-784 (the explorer's bowtie): parameter count by hand."""
    import jax
    from flax import nnx

    from aejax.assemble import build_model
    from aejax.training.state import count_params

    cfg = compose_config("encoder.hidden=[128,32]", "logger.mode=disabled")
    model = build_model(cfg, (28, 28, 1), "sigmoid", jax.random.key(0))
    widths = [784, 128, 32, 2, 32, 128, 784]
    expected = sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
    assert count_params(nnx.state(model, nnx.Param)) == expected == 210_130
    assert model(jax.numpy.zeros((3, 28, 28, 1))).shape == (3, 28, 28, 1)
    assert model.encode(jax.numpy.zeros((3, 28, 28, 1))).shape == (3, 2)

"""``hydra/launcher=aejax_batched`` with jobs that differ in the objective's scalar values: term
weights, a term's annealing, corruption levels (and grad_clip, an optimizer value). They group into
one program (each model's values ride in its state) and every job equals its basic-launcher run:
rows, summary and final state to 1e-5. The denoising and VAE jobs draw their noise from their own
seeds, as their separate runs do, so they are equal too (not only in distribution)."""
import numpy as np
import pytest
from conftest import compose_config, run_cli
from interrupted import final_params, rows, summary
from omegaconf import OmegaConf

from aejax.batching.grouping import signature
from aejax.batching.objective import objective_keys, objective_values

SMALL = ("encoder.hidden=[16]", "decoder.hidden=[16]", "trainer.epochs=2", "snapshot.every=1", "snapshot.images=false",
         "eval.probe_examples=300", "logger.mode=disabled", "trainer.progress=off")
BATCHED = "hydra/launcher=aejax_batched"


def _close(a, b, what, atol=1e-6):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=atol, err_msg=what)


def _compare(root, jobs: int) -> set:
    """Every job of the batched sweep against its basic-launcher run; the set of final val/losses."""
    losses = set()
    for job in map(str, range(jobs)):
        ours, theirs = root / "batched" / job, root / "basic" / job
        s, t = summary(ours), summary(theirs)
        assert s["status"] == t["status"] == "finished" and s["batched_group"] == jobs
        for key in ("val/loss", "train/loss", "val/loss_best", "test/mse"):
            _close(s[key], t[key], f"job {job}: {key}")
        a, b = rows(ours), rows(theirs)
        assert [r["step"] for r in a] == [r["step"] for r in b] and len(a) == 3
        for x, y in zip(a, b):
            assert x.keys() == y.keys()  # each term's own train/<term>, val/<term>
            _close([x[k] for k in sorted(x)], [y[k] for k in sorted(y)], f"job {job}, step {x['step']}")
        for x, y in zip(final_params(ours), final_params(theirs), strict=True):
            _close(x, y, f"job {job}: final state", atol=1e-5)
        losses.add(s["val/loss"])
    return losses


@pytest.mark.parametrize("grid", [
    # masking noise of two rates x two contractive weights, grad_clip on: deterministic terms, padded codes
    ("variant=denoising", "variant.corruption.kind=mask", "variant.corruption.rate=0.1,0.4",
     "+variant.terms.contractive.weight=1e-3,1e-1", "optimizer.grad_clip=0.5"),
    # a VAE: beta and its annealing per model (its samples from each model's own key)
    ("variant=vae", "variant.terms.kl.weight=0.5,2", "variant.terms.kl.anneal_steps=5,20"),
], ids=["denoising-contractive", "vae-beta-annealing"])
def test_jobs_differing_in_objective_values_train_as_one_program_and_equal_their_separate_runs(tmp_path, grid):
    batched = run_cli("-m", BATCHED, *grid, *SMALL, f"hydra.sweep.dir={tmp_path / 'batched'}", cwd=tmp_path)
    assert batched.returncode == 0, batched.stderr
    assert "jobs #0, #1, #2, #3 train as one program of 4 models" in batched.stderr
    basic = run_cli("-m", *grid, *SMALL, f"hydra.sweep.dir={tmp_path / 'basic'}", cwd=tmp_path)
    assert basic.returncode == 0, basic.stderr
    assert len(_compare(tmp_path, 4)) == 4  # four different models


def test_which_objective_values_ride_per_model():
    vae = compose_config("variant=vae", "variant.terms.kl.anneal_steps=10")
    assert objective_values(vae) == {"variant.terms.kl.weight": 1.0, "variant.terms.kl.anneal_steps": 10.0}
    # no annealing is part of the program: jobs with and without it do not group
    assert signature(vae) != signature(compose_config("variant=vae"))
    assert signature(vae) == signature(compose_config("variant=vae", "variant.terms.kl.anneal_steps=30",
                                            "variant.terms.kl.weight=4"))
    # free bits are decided in Python (on or off): part of the program
    assert signature(vae) != signature(compose_config("variant=vae", "variant.terms.kl.anneal_steps=10",
                                            "variant.terms.kl.free_bits=0.5"))
    noisy = compose_config("variant=denoising", "variant.corruption.sigma=0.2")
    assert objective_values(noisy) == {"variant.corruption.sigma": pytest.approx(0.2)}
    assert signature(noisy) == signature(compose_config("variant=denoising", "variant.corruption.sigma=0.7"))
    # patch masking rounds its rate to a number of patches in Python; its rate is the program's
    patch = compose_config("variant=denoising", "variant.corruption.kind=patch")
    assert objective_keys(patch) == []
    assert signature(patch) != signature(compose_config("variant=denoising", "variant.corruption.kind=patch",
                                              "variant.corruption.rate=0.5"))
    # l1's mean is over each model's own units (test_batched_padding): sparse jobs of different sizes group
    sparse = compose_config("variant=sparse", "model.latent_dim=2")
    assert signature(sparse) == signature(compose_config("variant=sparse", "model.latent_dim=8",
                                                "variant.terms.l1.weight=0.1"))
    # a term of one's own may read its weight in Python: its weight is the program's
    own = OmegaConf.create({"variant": {"terms": {"mine": {"_target_": "m.f", "weight": 1.0}}, "corruption": None}})
    assert objective_keys(own) == []

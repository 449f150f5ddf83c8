"""End-of-run evaluation against independent computations (numpy, scikit-learn)."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import compose_config
from flax import nnx
from omegaconf import OmegaConf
from scipy.special import logsumexp
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

from aejax.analysis.evaluate import evaluate, normal_classes_only
from aejax.assemble import assemble
from aejax.data import load_dataset
from aejax.tracking import LocalTracker
from aejax.training.loop import fit


def _fit(tmp_path, *overrides):
    cfg = compose_config(*overrides, "logger.mode=disabled", "trainer.progress=off")
    data = load_dataset(cfg.dataset)
    if cfg.eval.anomaly is not None:
        data = normal_classes_only(data, cfg.eval.anomaly)
    tracker = LocalTracker(tmp_path, {})
    result = fit(assemble(cfg, data).parts, data, tracker)
    tracker.finish("finished")
    summary = evaluate(OmegaConf.to_object(cfg.eval), data, result.graphdef, result.state.params, jax.random.key(0),
                       recon=cfg.variant.recon, batch_size=cfg.trainer.eval_batch_size)
    return cfg, data, nnx.merge(result.graphdef, result.state.params), result.summary, summary


def test_test_metrics_agree_with_the_loop_and_with_sklearn(tmp_path):
    cfg, data, model, fit_summary, s = _fit(tmp_path, "trainer.epochs=10", "model.latent_dim=4")
    out = np.asarray(model(jnp.asarray(data.x_test)), np.float64)
    assert s["test/mse"] == pytest.approx(np.mean((out - data.x_test) ** 2), rel=1e-5)  # numpy on the model's output
    assert s["test/mse"] == pytest.approx(fit_summary["val/mse"], rel=1e-5)  # and the loop's validation agrees
    x_train, x_test = (a.reshape(len(a), -1) for a in (data.x_train, data.x_test))
    pca = PCA(4).fit(x_train)
    pca_mse = np.mean((pca.inverse_transform(pca.transform(x_test)) - x_test) ** 2)
    assert s["test/pca_mse"] == pytest.approx(pca_mse, rel=1e-4)
    assert s["test/ae_pca_ratio"] == pytest.approx(s["test/mse"] / pca_mse, rel=1e-4)
    assert s["test/psnr"] == pytest.approx(10 * np.log10(1 / s["test/mse"]), rel=1e-6)
    p = np.clip(out, 1e-7, 1 - 1e-7)
    assert s["test/bce"] == pytest.approx(np.mean(-(data.x_test * np.log(p) + (1 - data.x_test) * np.log(1 - p))), rel=1e-3)
    # the probes: scikit-learn's classifiers fitted on the same codes (posterior means) give the same accuracy
    z_train, z_test = (np.asarray(model.encode(jnp.asarray(x))) for x in (data.x_train, data.x_test))
    scaler = StandardScaler().fit(z_train)
    probe = LogisticRegression(max_iter=1000).fit(scaler.transform(z_train), data.y_train)
    assert s["test/probe_accuracy"] == pytest.approx(probe.score(scaler.transform(z_test), data.y_test), abs=1e-12)
    knn = KNeighborsClassifier(n_neighbors=cfg.eval.knn_k).fit(z_train, data.y_train)
    assert s["test/knn_accuracy"] == pytest.approx(knn.score(z_test, data.y_test), abs=1e-12)
    assert 0.1 < s["test/probe_accuracy"] and 0.1 < s["test/knn_accuracy"]  # better than chance (10 digit classes)


def test_anomaly_detection_scores_held_out_classes_by_reconstruction_error(tmp_path):
    cfg, data, model, _, s = _fit(tmp_path, "trainer.epochs=20", "model.latent_dim=4",
                                  "+eval.anomaly={normal_classes:[0,1,2,3,4],percentile:95}")
    assert set(np.unique(data.y_train)) == {0, 1, 2, 3, 4} and len(data.x_test) == 360  # test keeps every class
    errors = np.mean((np.asarray(model(jnp.asarray(data.x_test))) - data.x_test).reshape(360, -1) ** 2, axis=1)
    held_out = data.y_test >= 5
    assert s["anomaly/auroc"] == pytest.approx(roc_auc_score(held_out, errors), abs=1e-6)
    assert s["anomaly/auroc"] > 0.6  # unseen classes reconstruct worse
    train_errors = np.mean((np.asarray(model(jnp.asarray(data.x_train))) - data.x_train).reshape(len(data.x_train), -1) ** 2, axis=1)
    threshold = np.percentile(train_errors, 95)
    assert s["anomaly/threshold"] == pytest.approx(threshold, rel=1e-5)
    assert s["anomaly/detection_rate"] == pytest.approx(np.mean(errors[held_out] > threshold), abs=1e-9)


def _numpy_bounds(model, x: np.ndarray, samples: int, rng: np.random.Generator) -> np.ndarray:
    """Importance-weighted bounds on log p(x) per example, in float64 numpy (Burda et al. 2016):
    ``log mean_k p(x|z_k) p(z_k) / q(z_k|x)``, Bernoulli decoder, ``z_k ~ q = N(mean, exp(logvar))``."""
    mean, logvar = (np.asarray(a, np.float64) for a in model.code_params(model.features(jnp.asarray(x))))
    eps = rng.standard_normal((samples, *mean.shape))
    z = mean + np.exp(0.5 * logvar) * eps  # [K, n, d]
    logits = np.asarray(model.decode_logits(jnp.asarray(z.reshape(-1, z.shape[-1]), jnp.float32)), np.float64)
    logits = logits.reshape(samples, len(x), -1)
    target = x.reshape(1, len(x), -1).astype(np.float64)
    log_px = np.sum(target * -np.logaddexp(0, -logits) + (1 - target) * -np.logaddexp(0, logits), axis=-1)
    log_normal = lambda v: -0.5 * (v ** 2 + np.log(2 * np.pi))  # noqa: E731
    log_w = log_px + np.sum(log_normal(z), axis=-1) - np.sum(log_normal(eps) - 0.5 * logvar, axis=-1)
    return logsumexp(log_w, axis=0) - np.log(samples)


def test_vae_elbo_iwae_and_active_units_match_numpy(tmp_path):
    n, k = 200, 64
    _, data, model, _, s = _fit(tmp_path, "variant=vae", "trainer.epochs=10", "model.latent_dim=4",
                                f"eval.iwae_samples={k}", f"eval.iwae_examples={n}")
    x = data.x_test[:n]
    rng = np.random.default_rng(0)
    estimates = {}
    for samples, draws in ((1, 16), (k, 4)):  # independent numpy estimates: their spread is the Monte Carlo error
        bounds = np.stack([_numpy_bounds(model, x, samples, rng) for _ in range(draws)])  # [draws, n]
        single = np.sqrt(np.mean(bounds.var(axis=0, ddof=1)) / n)  # standard error of one estimate (aejax's)
        estimates[samples] = (bounds.mean(), single, 5 * np.sqrt(single**2 * (1 + 1 / draws)))
    (elbo, elbo_err, elbo_tol), (iwae, _, iwae_tol) = estimates[1], estimates[k]
    assert s["test/elbo"] == pytest.approx(elbo, abs=elbo_tol)
    assert -s["test/iwae_nll"] == pytest.approx(iwae, abs=iwae_tol)
    # K matters: the K-sample bound is above the ELBO by more than the tolerance plus 3 standard
    # errors of a one-sample estimate, so an "IWAE" that ignored K (the ELBO again) fails the line before
    assert iwae - elbo > iwae_tol + 3 * elbo_err
    # active units (Burda et al.): variance of the posterior mean over the test set above 0.01
    codes = np.asarray(model.encode(jnp.asarray(data.x_test)), np.float64)
    variances = codes.var(axis=0)
    assert s["test/active_units"] == int(np.sum(variances > 0.01))
    print(f"\nELBO {elbo:.3f} +- {elbo_tol:.3f}, IWAE(K={k}) {iwae:.3f} +- {iwae_tol:.3f}, aejax {s['test/elbo']:.3f} / "
          f"{-s['test/iwae_nll']:.3f}; unit variances {np.round(variances, 4)}")


def test_no_ae_pca_ratio_where_pca_is_lossless(tmp_path):
    """line2d is 2-D: PCA at k=2 reconstructs it exactly, and a ratio to a rounding error is absurd."""
    from conftest import run_cli

    result = run_cli("dataset=line2d", "model.latent_dim=2", "trainer.epochs=1", "snapshot.every=0", "logger.mode=disabled",
                     f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["test/pca_mse"] < 1e-9 and summary["test/ae_pca_ratio"] is None
    assert "PCA at k=2 0.00000 (lossless at this k: no AE/PCA ratio)" in result.stdout


def test_one_progress_line_names_each_part_and_the_summary_records_the_time(tmp_path):
    import re

    from conftest import run_cli

    result = run_cli("trainer.epochs=1", "snapshot.every=0", "logger.mode=disabled", f"hydra.run.dir={tmp_path / 'run'}",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("evaluating:")]
    parts = re.findall(r" (\w+) ([0-9.]+) s", line)
    assert [name for name, _ in parts] == ["codes", "pca", "probe", "knn"]
    total = float(re.search(r"\(([0-9.]+) s\)$", line).group(1))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["eval_time_s"] == pytest.approx(total, abs=0.006)  # the line's total is the summary's
    assert sum(float(s) for _, s in parts) <= total + 0.02 and summary["train_time_s"] > 0

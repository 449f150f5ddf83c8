"""End-of-run evaluation against independent computations (numpy, scikit-learn)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import compose_config
from flax import nnx
from omegaconf import OmegaConf
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score

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
    assert s["test/mse"] == pytest.approx(fit_summary["val/mse"], rel=1e-5)  # two paths, one number
    x_train, x_test = (a.reshape(len(a), -1) for a in (data.x_train, data.x_test))
    pca = PCA(4).fit(x_train)
    pca_mse = np.mean((pca.inverse_transform(pca.transform(x_test)) - x_test) ** 2)
    assert s["test/pca_mse"] == pytest.approx(pca_mse, rel=1e-4)
    assert s["test/ae_pca_ratio"] == pytest.approx(s["test/mse"] / pca_mse, rel=1e-4)
    assert s["test/psnr"] == pytest.approx(10 * np.log10(1 / s["test/mse"]), rel=1e-6)
    out = np.asarray(model(jnp.asarray(data.x_test)))
    p = np.clip(out, 1e-7, 1 - 1e-7)
    assert s["test/bce"] == pytest.approx(np.mean(-(data.x_test * np.log(p) + (1 - data.x_test) * np.log(1 - p))), rel=1e-3)
    assert 0.1 < s["test/probe_accuracy"] <= 1 and 0.1 < s["test/knn_accuracy"] <= 1  # 10 digit classes


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


def test_vae_bounds_are_ordered(tmp_path):
    _, _, _, _, s = _fit(tmp_path, "variant=vae", "trainer.epochs=10", "model.latent_dim=4", "eval.iwae_samples=32",
                         "eval.iwae_examples=200")
    assert -s["test/iwae_nll"] >= s["test/elbo"] - 0.5  # log p(x) >= IWAE bound >= ELBO (up to sampling noise)
    assert 0 <= s["test/active_units"] <= 4

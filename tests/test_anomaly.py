"""Anomaly mode's numbers against scikit-learn computed here: the AE's AUROC beside PCA's and an
IsolationForest's on the same split, the threshold over every training error, and the probes
scored on the classes they were fitted on."""
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler
from test_evaluate import _fit


def test_anomaly_mode_reports_pca_and_isolation_forest_beside_the_ae(tmp_path):
    # probe_examples=200 < the 721 training examples of classes 0-4: the threshold still uses all of them
    cfg, data, model, _, s = _fit(tmp_path, "trainer.epochs=20", "model.latent_dim=4", "eval.probe_examples=200",
                                  "+eval.anomaly={normal_classes:[0,1,2,3,4],percentile:90}")
    x_train, x_test = (a.reshape(len(a), -1).astype(np.float64) for a in (data.x_train, data.x_test))
    anomalous = data.y_test >= 5
    pca = PCA(4, svd_solver="full").fit(x_train)
    pca_errors = np.mean((pca.inverse_transform(pca.transform(x_test)) - x_test) ** 2, axis=1)
    assert s["anomaly/pca_auroc"] == pytest.approx(roc_auc_score(anomalous, pca_errors), abs=1e-9)
    forest = IsolationForest(random_state=0).fit(data.x_train.reshape(len(x_train), -1))
    assert s["anomaly/iforest_auroc"] == pytest.approx(
        roc_auc_score(anomalous, -forest.score_samples(data.x_test.reshape(len(x_test), -1))), abs=1e-9)
    assert 0.5 < s["anomaly/pca_auroc"] < 1 and 0.5 < s["anomaly/iforest_auroc"] < 1

    train_errors = np.mean((np.asarray(model(jnp.asarray(data.x_train))) - data.x_train).reshape(len(x_train), -1) ** 2, axis=1)
    assert len(train_errors) == s["anomaly/threshold_examples"] == 721 > cfg.eval.probe_examples
    assert s["anomaly/threshold"] == pytest.approx(np.percentile(train_errors, 90), rel=1e-5)
    assert s["anomaly/threshold"] != pytest.approx(np.percentile(train_errors[:200], 90), rel=1e-5)

    # the probe knows classes 0-4 only: scored on their test examples (not on all ten, capped near 50%)
    normal = ~anomalous
    z_train = np.asarray(model.encode(jnp.asarray(data.x_train[:200])))
    z_test = np.asarray(model.encode(jnp.asarray(data.x_test[normal])))
    scaler = StandardScaler().fit(z_train)
    probe = LogisticRegression(max_iter=1000).fit(scaler.transform(z_train), data.y_train[:200])
    assert s["test/probe_accuracy"] == pytest.approx(probe.score(scaler.transform(z_test), data.y_test[normal]), abs=1e-12)
    assert s["test/probe_accuracy"] > 0.6

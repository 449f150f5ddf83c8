"""Anomaly mode's numbers (``eval.anomaly``): the autoencoder's reconstruction error as an anomaly
score, and two baselines on the same split, since an AUROC means little alone.

- ``anomaly/auroc``: AUROC of the AE's per-example reconstruction MSE, the normal classes' test
  examples against the others';
- ``anomaly/pca_auroc``: the same with PCA's reconstruction error at the AE's bottleneck size
  (components fitted on the training split, i.e. on the normal classes only);
- ``anomaly/iforest_auroc``: scikit-learn's ``IsolationForest`` (untuned: its defaults, 100
  trees, ``random_state=0``) fitted on the same training examples, scored by
  ``-score_samples`` (higher: more anomalous);
- ``anomaly/threshold``: the ``percentile`` of the AE's errors on the training examples given
  (the whole training split when it is in memory), with ``anomaly/detection_rate`` and
  ``anomaly/false_alarm_rate``: the shares of other-class and normal-class test examples above it.
"""
from __future__ import annotations

import numpy as np

from aejax.analysis import metrics, pca

# Training examples the baselines are fitted on at most (PCA's components, the forest's trees).
BASELINE_EXAMPLES = 20000


def isolation_forest_scores(x_train: np.ndarray, x_test: np.ndarray, seed: int = 0) -> np.ndarray:
    """``-IsolationForest(random_state=seed).fit(x_train).score_samples(x_test)``: higher is more anomalous."""
    from sklearn.ensemble import IsolationForest

    forest = IsolationForest(random_state=seed).fit(np.asarray(x_train).reshape(len(x_train), -1))
    return -forest.score_samples(np.asarray(x_test).reshape(len(x_test), -1))


def anomaly_metrics(normal: np.ndarray, train_errors: np.ndarray, test_errors: np.ndarray, x_train: np.ndarray,
                    x_test: np.ndarray, k: int, percentile: float) -> dict[str, float]:
    """The ``anomaly/*`` summary. ``normal``: a mask over the test split (the normal classes);
    ``train_errors``/``test_errors``: the AE's per-example MSE; ``x_train``: the training examples
    (normal classes only) the baselines are fitted on (the first ``BASELINE_EXAMPLES``)."""
    fit = x_train[:BASELINE_EXAMPLES]
    out = {"anomaly/auroc": metrics.auroc(test_errors[normal], test_errors[~normal])}
    pca_scores = pca.errors(pca.fit(fit, k), x_test)
    out["anomaly/pca_auroc"] = metrics.auroc(pca_scores[normal], pca_scores[~normal])
    forest = isolation_forest_scores(fit, x_test)
    out["anomaly/iforest_auroc"] = metrics.auroc(forest[normal], forest[~normal])
    threshold, rate = metrics.detection_rate(train_errors, test_errors[~normal], percentile)
    out["anomaly/threshold"], out["anomaly/detection_rate"] = threshold, rate
    out["anomaly/false_alarm_rate"] = float(np.mean(test_errors[normal] > threshold))
    out["anomaly/threshold_examples"] = int(len(train_errors))
    return out

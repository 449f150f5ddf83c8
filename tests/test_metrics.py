"""Evaluation metrics against independent computations: sklearn, closed forms, hand-made cases."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import KNeighborsClassifier

from aejax.analysis.metrics import (active_units, auroc, detection_rate, gaussian_iwae, knn_accuracy,
                                    linear_probe_accuracy, pca_test_mse, psnr)


def test_psnr():
    assert psnr(0.01) == pytest.approx(20.0)
    assert psnr(1.0, peak=255.0) == pytest.approx(20 * math.log10(255.0))
    assert psnr(0.0) == math.inf


def test_pca_test_mse_matches_sklearn_and_vanishes_at_full_rank():
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(12, 4 * 4))
    x_train = (rng.normal(size=(200, 12)) @ mixing + 0.1 * rng.normal(size=(200, 16))).reshape(200, 4, 4, 1)
    x_test = (rng.normal(size=(50, 12)) @ mixing + 0.1 * rng.normal(size=(50, 16))).reshape(50, 4, 4, 1)
    flat_train, flat_test = x_train.reshape(200, -1), x_test.reshape(50, -1)
    for k in (1, 3, 8):
        pca = PCA(k).fit(flat_train)
        expected = np.mean((pca.inverse_transform(pca.transform(flat_test)) - flat_test) ** 2)
        assert pca_test_mse(x_train, x_test, k) == pytest.approx(expected, rel=1e-5)
    assert pca_test_mse(x_train, x_test, 16) == pytest.approx(0.0, abs=1e-20)
    assert pca_test_mse(x_train, x_test, 100) == pytest.approx(0.0, abs=1e-20)
    few = flat_train[:10]  # fewer examples than features: the SVD path
    for k in (1, 3):
        pca = PCA(k).fit(few)
        expected = np.mean((pca.inverse_transform(pca.transform(flat_test)) - flat_test) ** 2)
        assert pca_test_mse(few, x_test, k) == pytest.approx(expected, rel=1e-5)


def _separable_codes(rng, per_class, num_classes=10, dim=32, informative=8):
    """Balanced Gaussian codes labelled by the largest of ``num_classes`` linear scores of their first
    ``informative`` dimensions, keeping only codes whose best score beats the runner-up by a margin of 1:
    linearly separable, without clusters."""
    weights = np.random.default_rng(123).normal(size=(dim, num_classes))
    weights[informative:] = 0.0
    z = rng.normal(size=(60 * per_class * num_classes, dim))
    scores = z @ weights
    top2 = np.sort(scores, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0] > 1.0
    z, y = z[margin], np.argmax(scores, axis=1)[margin]
    keep = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(num_classes)])
    assert len(keep) == per_class * num_classes
    keep = rng.permutation(keep)
    return z[keep], y[keep]


def test_linear_probe_separates_linear_classes_and_is_at_chance_on_shuffled_labels():
    # Over seeds 0..19 this setup gives 0.989..1.0, and 0.075..0.135 with shuffled labels (a probe
    # on shuffled labels is a random linear classifier, whose agreement with the true labels still
    # varies with the direction it happens to pick: fewer classes or dimensions spread it wider).
    rng = np.random.default_rng(1)
    z_train, y_train = _separable_codes(rng, 100)
    z_test, y_test = _separable_codes(rng, 100)
    assert linear_probe_accuracy(z_train, y_train, z_test, y_test) >= 0.98
    chance = 1 / 10
    assert abs(linear_probe_accuracy(z_train, rng.permutation(y_train), z_test, y_test) - chance) <= 0.1


@pytest.mark.parametrize("k", [1, 4, 5, 6])
def test_knn_accuracy_matches_sklearn_including_vote_ties(k):
    # Continuous codes: no two training points at the same distance from a test point, so the
    # neighbour sets agree with sklearn's (on exact distance ties sklearn's own kd_tree/ball_tree/
    # brute searches pick different neighbours). Vote ties do occur: even k, 5 classes.
    rng = np.random.default_rng(k)
    z_train, y_train = rng.normal(size=(600, 3)), rng.integers(0, 5, 600) * 3 + 2  # labels 2, 5, ..., 14
    z_test, y_test = rng.normal(size=(300, 3)), rng.integers(0, 5, 300) * 3 + 2
    knn = KNeighborsClassifier(k).fit(z_train, y_train)
    got = knn_accuracy(z_train, y_train, z_test, y_test, k=k, chunk_size=64)
    assert got == knn.score(z_test, y_test)
    if k in (4, 6):  # the data really exercise the tie rule
        votes = np.stack([(y_train[knn.kneighbors(z_test, return_distance=False)] == c).sum(1)
                          for c in np.unique(y_train)], axis=1)
        assert np.sum((votes == votes.max(1, keepdims=True)).sum(1) > 1) >= 20


@pytest.mark.parametrize("frames", ["per chunk", "one"])
def test_knn_neighbours_are_the_exact_nearest_in_either_frame(monkeypatch, frames):
    # Codes far from their centre and close to each other (float32's weak spot: the search must
    # rank them exactly), in both ways of centring them: a frame per chunk of test codes, or one.
    from aejax.analysis import knn

    if frames == "one":
        monkeypatch.setattr(knn, "LOCAL_BYTES", 0)
    rng = np.random.default_rng(11)
    z_train = 50.0 + rng.normal(size=(2000, 2)) * [1.0, 1e-3]
    z_test = 50.0 + rng.normal(size=(500, 2)) * [1.0, 1e-3]
    d2 = ((z_test[:, None, :] - z_train[None, :, :]) ** 2).sum(-1)
    expected = np.sort(np.argsort(d2, axis=1, kind="stable")[:, :5], axis=1)
    assert np.array_equal(np.sort(knn.knn_neighbours(z_train, z_test, 5, chunk_size=64), axis=1), expected)
    search = knn.knn_accuracy_search(z_train, rng.integers(0, 3, 2000), z_test, rng.integers(0, 3, 500), 5, 64)
    assert 0.0 <= search() <= 1.0


def test_compact_order_is_a_permutation_of_compact_runs():
    from aejax.analysis.knn import _compact_order

    rng = np.random.default_rng(4)
    x = rng.normal(size=(1000, 3))
    order = _compact_order(x, 64)
    assert np.array_equal(np.sort(order), np.arange(1000))
    runs = [x[order[i:i + 64]] for i in range(0, 1000, 64)]
    spread = np.mean([np.sum(r.var(axis=0)) for r in runs])
    assert spread < 0.4 * np.sum(x.var(axis=0))  # each run a small part of the cloud (runs in random order: ~1)


def test_knn_tie_rules_by_hand():
    z_train = np.array([[1.0], [2.0], [3.0], [4.0], [-4.0]])
    z_test = np.zeros((1, 1))
    # 2-2 vote between labels 7 and 3: the smallest label wins, as in sklearn.
    assert knn_accuracy(z_train, np.array([7, 3, 7, 3, 9]), z_test, np.array([3]), k=4) == 1.0
    assert KNeighborsClassifier(4).fit(z_train, [7, 3, 7, 3, 9]).predict(z_test)[0] == 3
    # Points 3 and 4 both at distance 4 from 0 compete for the 4th place: the lower index (label 8)
    # gets it, making 8 the majority over 1.
    assert knn_accuracy(z_train, np.array([8, 8, 1, 8, 1]), z_test, np.array([8]), k=4) == 1.0
    assert knn_accuracy(z_train, np.array([8, 8, 1, 1, 8]), z_test, np.array([1]), k=4) == 1.0


def test_knn_distance_ties_take_the_lowest_index():
    # Integer codes: many exact distance ties. The reference: a full stable sort of the distances.
    rng = np.random.default_rng(7)
    z_train, y_train = rng.integers(0, 3, (200, 2)), rng.integers(0, 4, 200)
    z_test, y_test = rng.integers(0, 3, (100, 2)), rng.integers(0, 4, 100)
    d2 = ((z_test[:, None, :] - z_train[None, :, :]) ** 2).sum(-1)
    for k in (3, 4, 7):
        nearest = np.argsort(d2, axis=1, kind="stable")[:, :k]
        predicted = [np.argmax(np.bincount(y_train[row], minlength=4)) for row in nearest]
        assert knn_accuracy(z_train, y_train, z_test, y_test, k=k, chunk_size=32) == np.mean(predicted == y_test)


def test_auroc_matches_sklearn_with_and_without_ties():
    rng = np.random.default_rng(2)
    for neg, pos in [(rng.normal(size=300), rng.normal(0.5, size=200)),  # no ties
                     (rng.integers(0, 6, 300).astype(float), rng.integers(1, 7, 200).astype(float))]:
        expected = roc_auc_score(np.r_[np.zeros(len(neg)), np.ones(len(pos))], np.r_[neg, pos])
        assert auroc(neg, pos) == pytest.approx(expected, rel=1e-12)
    assert auroc(np.array([0.0, 1.0]), np.array([2.0, 3.0, 4.0])) == 1.0
    assert auroc(np.array([2.0, 3.0, 4.0]), np.array([0.0, 1.0])) == 0.0
    assert auroc(np.full(4, 1.5), np.full(3, 1.5)) == 0.5
    assert auroc(np.array([1.0, 2.0]), np.array([2.0])) == 0.75  # one win, one tie


def test_detection_rate_by_hand():
    train = np.arange(0.0, 101.0)  # 0, 1, ..., 100: the p-th percentile is p exactly
    threshold, rate = detection_rate(train, np.array([10.0, 95.0, 95.5, 200.0]))
    assert threshold == 95.0
    assert rate == 0.5  # strictly above: 95.5 and 200, not 95 itself
    assert detection_rate(train, np.array([49.0, 50.5, 60.0, 70.0]), percentile=50.0) == (50.0, 0.75)
    assert detection_rate(train[::-1], np.array([99.5]), percentile=99.5) == (99.5, 0.0)


def test_active_units_counts_units_with_variable_posterior_means():
    rng = np.random.default_rng(3)
    means = rng.normal(size=(5000, 5)) * np.array([1.0, 1e-2, 1.0, 1e-2, 1.0]) + 7.0  # variances 1 and 1e-4
    assert active_units(means) == 3
    assert active_units(means, threshold=1e-5) == 5
    assert active_units(means, threshold=2.0) == 0


# Linear Gaussian model in one latent dimension: z ~ N(0, 1), x | z ~ N(z, S2), so x ~ N(0, 1 + S2)
# and the posterior is p(z | x) = N(x / (1 + S2), S2 / (1 + S2)).
S2 = 0.25
X = jnp.array([-2.0, -0.3, 0.0, 0.8, 2.5])


def _log_normal(v, mean, var):
    return -0.5 * (jnp.log(2 * jnp.pi * var) + (v - mean) ** 2 / var)


def _log_px_given_z(x):
    return lambda z: _log_normal(x, z[:, 0], S2)  # [B, 1] -> [B]


def _iwae(x, mean, logvar, seed, k):
    """The bound for the model above, jitted as a whole (eagerly it compiles op by op, ~1 s per K)."""
    bound = jax.jit(lambda x, mean, logvar, key: gaussian_iwae(_log_px_given_z(x), mean, logvar, key, k))
    return np.asarray(bound(x, mean, logvar, jax.random.key(seed)))


def test_iwae_with_the_exact_posterior_is_log_px_for_any_k():
    mean = (X / (1 + S2))[:, None]
    logvar = jnp.full_like(mean, math.log(S2 / (1 + S2)))
    log_px = _log_normal(X, 0.0, 1 + S2)
    for k, seed in [(1, 0), (7, 1), (50, 2)]:
        bound = _iwae(X, mean, logvar, seed, k)
        assert bound.shape == X.shape
        np.testing.assert_allclose(bound, log_px, atol=2e-5)


def test_iwae_with_a_wrong_posterior_climbs_from_the_elbo_towards_log_px():
    reps = 4000  # independent draws per example, as many keys: every row of the batch has its own
    x = jnp.repeat(X, reps)
    m, v = 0.5 * x + 0.4, 0.6  # q(z | x) = N(m, v), the exact one is N(0.8 x, 0.2)
    mean, logvar = m[:, None], jnp.full((len(x), 1), math.log(v))
    log_px = np.asarray(_log_normal(X, 0.0, 1 + S2))
    # ELBO = E_q[log p(x|z)] + E_q[log p(z)] + H[q], each in closed form.
    elbo = (-0.5 * (np.log(2 * np.pi * S2) + ((X - (0.5 * X + 0.4)) ** 2 + v) / S2)
            - 0.5 * (np.log(2 * np.pi) + (0.5 * X + 0.4) ** 2 + v) + 0.5 * np.log(2 * np.pi * np.e * v))
    means = {}
    for k, seed in [(1, 10), (10, 11), (100, 12)]:
        bound = _iwae(x, mean, logvar, seed, k).reshape(len(X), reps)
        means[k], stderr = bound.mean(1), bound.std(1) / math.sqrt(reps)
        assert np.all(means[k] <= log_px + 4 * stderr + 1e-4)
        if k == 1:
            np.testing.assert_array_less(np.abs(means[1] - elbo), 4 * stderr + 1e-4)
    assert np.all(elbo < log_px - 0.05)  # the wrong q has a real gap to close
    assert np.all(means[10] > means[1] + 0.02) and np.all(means[100] > means[10] + 0.005)


@pytest.mark.parametrize("classes", [2, 4])
def test_probe_hessian_is_the_sum_of_kronecker_products(classes):
    # the Hessian of the summed log loss, written out term by term: sum_n kron(x x^T, diag(p) - p p^T)
    # (for two classes the one logit's p (1 - p))
    from aejax.analysis.probes import _hessian

    rng = np.random.default_rng(classes)
    x = rng.normal(size=(7, 3))
    p = rng.dirichlet(np.ones(classes), size=7)
    p = p[:, 1:] if classes == 2 else p
    want = sum(np.kron(np.outer(xn, xn), np.diag(pn) - np.outer(pn, pn)) for xn, pn in zip(x, p))
    np.testing.assert_allclose(_hessian(x, p), want, rtol=1e-12, atol=1e-12)


def test_linear_probe_on_wide_codes_matches_sklearn():
    # 32-unit codes, 10 overlapping classes: the probe's predictions are scikit-learn's fitted to a
    # tight tolerance (both solve the same convex problem), the accuracy to within 2 in 2,000
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(5)
    centers = rng.normal(size=(10, 32))
    y_train, y_test = rng.integers(0, 10, 3000), rng.integers(0, 10, 2000)
    z_train = centers[y_train] + 2.0 * rng.normal(size=(3000, 32))
    z_test = centers[y_test] + 2.0 * rng.normal(size=(2000, 32))
    scaler = StandardScaler().fit(z_train)
    ref = LogisticRegression(max_iter=5000, tol=1e-10).fit(scaler.transform(z_train), y_train)
    want = ref.score(scaler.transform(z_test), y_test)
    assert 0.5 < want < 0.95  # neither trivial nor hopeless: the optimum decides
    assert abs(linear_probe_accuracy(z_train, y_train, z_test, y_test) - want) <= 2 / 2000

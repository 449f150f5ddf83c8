"""End-of-run evaluation: the numbers that let a sweep answer its question.

On the test split: reconstruction error (MSE, BCE for data in [0, 1], PSNR), the PCA baseline
at the same bottleneck size fitted on the training split and the ratio AE/PCA, and the worth of
the code for labels it never saw (a linear probe and k-nearest neighbours, trained on the codes
of the training split). For Gaussian heads with BCE (a Bernoulli decoder): the ELBO, an
importance-weighted estimate of the negative log-likelihood and the number of active units.
With ``eval.anomaly`` (training on some classes only): AUROC of the reconstruction error for the
held-out classes beside PCA's and an IsolationForest's, and the detection rate at a percentile of
the training errors (``aejax.analysis.anomaly``); the probes are then scored on the normal classes.
The codes come from one compiled program over chunks of the test split and the probes' training
examples (those only encoded), the VAE's bounds from one more; the PCA basis, its test error and
the test split's variance are computed once per dataset split and k and kept beside the data
(``aejax.analysis.pca``); the probe and kNN run without scikit-learn and give its numbers
(``aejax.analysis.probes``, ``aejax.analysis.knn``): kNN's search is compiled while the device
computes the codes and runs on it while the probe is fitted. Sparse dictionaries and codebooks
add their own (``aejax.analysis.codes``).
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from aejax.analysis import knn, metrics, pca, probes
from aejax.analysis.codes import code_metrics
from aejax.data import Dataset
from aejax.errors import ConfigError
from aejax.variants.losses import bce, flat, mse


PCA_LOSSLESS = 1e-6  # PCA's test MSE below this fraction of the data's variance per value: lossless


@dataclass
class AnomalyConfig:
    normal_classes: list[int] = field(default_factory=list)  # train on these classes only
    percentile: float = 95.0  # the detection threshold: this percentile of the training errors


@dataclass
class EvalConfig:
    enabled: bool = True  # test/* metrics at the end of the run (see aejax.analysis.evaluate)
    probe: bool = True  # linear probe and kNN accuracy of the codes (needs labels)
    knn_k: int = 5
    probe_examples: int = 10000  # training examples whose codes fit the probes
    iwae_samples: int = 64  # importance samples of the VAE's NLL estimate
    iwae_examples: int = 1000  # test examples it is computed on
    anomaly: Optional[AnomalyConfig] = None


def check_labels_for_anomaly(data: Dataset) -> None:
    """``eval.anomaly`` scores held-out classes: a ConfigError, before training, for data without labels."""
    if not data.labeled:
        raise ConfigError("eval.anomaly", f"{data.name} has no labels, and anomaly detection trains on some classes "
                                          "and scores the others: give labels (y_train, y_test) or set eval.anomaly=null")


def without_labels(data: Dataset, probe: bool, snapshots: bool) -> Optional[str]:
    """The line a run logs once when its data has no labels, saying what is skipped (None: labeled)."""
    if data.labeled:
        return None
    skipped = (["probe/kNN accuracy"] if probe else []) + (["class colours (snapshots, explorer)"] if snapshots else [])
    return (f"dataset {data.name} has no labels: {' and '.join(skipped)} {'are' if len(skipped) > 1 else 'is'} skipped"
            if skipped else f"dataset {data.name} has no labels (nothing enabled needs them)")


def normal_classes_only(data: Dataset, anomaly: AnomalyConfig) -> Dataset:
    """The dataset with its training split restricted to ``anomaly.normal_classes``."""
    check_labels_for_anomaly(data)
    if data.y_train is None:
        raise ConfigError("eval.anomaly", f"{data.name}'s training labels are not loaded (a streamed split)")
    unknown = sorted(set(anomaly.normal_classes) - set(np.unique(data.y_train).tolist()))
    if unknown:
        raise ConfigError("eval.anomaly.normal_classes", f"{data.name} has no class {unknown[0]}")
    keep = np.isin(data.y_train, list(anomaly.normal_classes))
    return Dataset(data.name, np.asarray(data.x_train)[keep], data.y_train[keep], data.x_test, data.y_test,
                   data.class_names, data.unit_range)


def _per_example_chunks(graphdef: nnx.GraphDef, errors: tuple[bool, ...], params: nnx.State,
                        *splits: jax.Array) -> tuple[dict[str, jax.Array], ...]:
    def chunk(x, errors):
        model = nnx.merge(graphdef, params)
        mean, logvar = model.code_params(model.features(x))
        if not errors:  # the codes alone
            return {"z": mean}
        logits = model.decode_logits(mean)
        out = {"z": mean, "mse": mse(x, logits, model.activate)}
        if model.output == "sigmoid":
            out["bce"] = bce(x, logits, model.activate)
        if logvar is not None:
            out["logvar"] = logvar
        return out

    return tuple(jax.lax.map(partial(chunk, errors=e), chunks) for chunks, e in zip(splits, errors))


def _chunked(arrays: tuple[np.ndarray, ...], batch: int) -> tuple[int, tuple[np.ndarray, ...]]:
    """``(n, arrays)``: the arrays zero-padded to whole chunks of ``batch`` (at most ``n``) rows, ``[chunks, batch, ...]``."""
    n = len(arrays[0])
    batch = max(1, min(batch, n))
    rows = -(-n // batch) * batch
    return n, tuple(np.concatenate([a, np.zeros((rows - n, *a.shape[1:]), a.dtype)]).reshape(-1, batch, *a.shape[1:])
                    if rows > n else a.reshape(-1, batch, *a.shape[1:]) for a in arrays)


def _per_example(graphdef: nnx.GraphDef, params: nnx.State, splits: list[np.ndarray], batch: int,
                 errors: Optional[list[bool]] = None,
                 meanwhile: Optional[Callable[[tuple[dict[str, jax.Array], ...]], None]] = None,
                 models: int = 0) -> list[dict[str, np.ndarray]]:
    """Codes (posterior means) of each array of ``splits`` and, where ``errors`` says so (all by
    default), their log-variances and reconstruction errors: one compiled program over chunks of
    ``batch`` of each, in one call. ``meanwhile`` is called with its (pending) outputs while the
    device computes them. ``models``: ``params`` of that many models stacked (one vmapped
    program); the result then holds each model's splits in turn."""
    errors = tuple(errors) if errors is not None else (True,) * len(splits)
    sizes, chunks = zip(*(_chunked((np.asarray(x, np.float32),), batch) for x in splits))
    fn = partial(_per_example_chunks, graphdef, errors)
    if models:
        fn = jax.vmap(fn, in_axes=(0, *(None,) * len(splits)))
    pending = jax.jit(fn)(params, *(c for c, in chunks))
    if meanwhile is not None:
        meanwhile(pending)
    got = jax.device_get(pending)
    each = [tuple({k: v[m] for k, v in split.items()} for split in got) for m in range(models)] if models else [got]
    return [{k: v.reshape(-1, *v.shape[2:])[:n] for k, v in split.items()}
            for one in each for split, n in zip(one, sizes)]


def needed_splits(settings: EvalConfig, data: Dataset, x_train: np.ndarray) -> tuple[list[np.ndarray], list[bool]]:
    """The splits whose codes ``evaluate`` needs and whether it needs their reconstruction errors
    too: the test split (errors), and the probes' training examples (the first ``probe_examples`` of
    ``x_train``) for the probes (codes only) or the anomaly threshold (errors)."""
    e = settings
    probe = e.probe and data.y_train is not None and data.y_test is not None  # needs both splits' labels
    if not (probe or e.anomaly is not None):
        return [data.x_test], [True]
    return [data.x_test, x_train[: e.probe_examples]], [True, e.anomaly is not None]


def _bounds_chunks(model: nnx.Module, x: jax.Array, mean: jax.Array, logvar: jax.Array,
                   samples: tuple[int, ...], key: jax.Array) -> tuple[jax.Array, ...]:

    def log_px_given_z(x):
        return lambda z: -jnp.sum(optax.sigmoid_binary_cross_entropy(flat(model.decode_logits(z)), flat(x)), axis=1)

    def chunk(args):
        i, x, mean, logvar = args
        chunk_key = jax.random.fold_in(key, i * x.shape[0])  # the chunk's first example
        return tuple(metrics.gaussian_iwae(log_px_given_z(x), mean, logvar, chunk_key, k) for k in samples)

    return jax.lax.map(chunk, (jnp.arange(len(x)), x, mean, logvar))


def _iwae_bounds(graphdef: nnx.GraphDef, params: nnx.State, x: np.ndarray, mean: np.ndarray, logvar: np.ndarray,
                 samples: tuple[int, ...], key: jax.Array, batch: int) -> tuple[np.ndarray, ...]:
    """Importance-weighted lower bounds on log p(x) with each number of ``samples``, Bernoulli
    decoder, nats per example: one compiled program over chunks of ``batch``."""
    n, chunks = _chunked((x, mean, logvar), batch)
    program = jax.jit(_bounds_chunks, static_argnums=4)
    return tuple(b.reshape(-1)[:n] for b in jax.device_get(program(nnx.merge(graphdef, params), *chunks, samples, key)))


Report = Callable[[str, Optional[float]], None]


class _Parts:
    """Times the parts of an evaluation; ``report(name, None)`` as one starts, ``report(name,
    seconds)`` as it ends (the console's progress line)."""

    def __init__(self, report: Optional[Report]):
        self.report = report or (lambda name, seconds: None)

    @contextmanager
    def part(self, name: str):
        self.report(name, None)
        start = time.perf_counter()
        yield
        self.report(name, time.perf_counter() - start)


def evaluate(settings: EvalConfig, data: Dataset, graphdef: nnx.GraphDef, params: nnx.State, key: jax.Array, *,
             recon: str, batch_size: int, pca_mse: float | None = None,
             report: Optional[Report] = None, codes: Optional[list[dict[str, np.ndarray]]] = None) -> dict[str, float]:
    """The ``test/*`` (and ``anomaly/*``) summary of a trained model (``graphdef`` and ``params``).

    ``recon``: the objective's reconstruction loss (``Objective.recon``; a VAE's NLL bounds need a
    Bernoulli decoder, ``bce``); ``batch_size``: examples per compiled chunk; ``pca_mse``: the PCA
    baseline at this bottleneck size when already computed (it depends on the data only);
    ``report``: told each part's name as it starts and its seconds as it ends; ``codes``: the
    per-example outputs of ``needed_splits`` when already computed (a batched group's, all its
    models' in one program). The latent size
    and whether the model is a VAE come from the model. Without labels the probe and kNN
    accuracies are left out (``settings.anomaly`` needs labels: see ``check_labels_for_anomaly``).
    """
    e, batch, parts = settings, batch_size, _Parts(report)
    model = nnx.merge(graphdef, params)
    # The training split as far as it is needed: all of it in memory, the first probe_examples if streamed.
    streamed = not isinstance(data.x_train, np.ndarray)
    x_train = data.x_train[np.arange(min(data.num_train, e.probe_examples))] if streamed else data.x_train
    probe = e.probe and data.y_train is not None and data.y_test is not None  # needs both splits' labels
    # in anomaly mode the probes know the normal classes only: scored on those classes' test examples
    seen = np.isin(data.y_test, list(e.anomaly.normal_classes)) if probe and e.anomaly is not None else slice(None)
    knn_program = []

    def compile_knn(pending: tuple[dict[str, jax.Array], ...]) -> None:  # while the device computes the codes
        knn_program.append(knn.knn_program(min(len(x_train), e.probe_examples), len(data.y_test[seen]),
                                              int(np.prod(pending[1]["z"].shape[2:])), e.knn_k))

    with parts.part("codes"):
        if codes:  # a batched group's, computed for its models at once
            test, *rest = codes
        else:
            splits, errors = needed_splits(e, data, x_train)
            test, *rest = _per_example(graphdef, params, splits, batch, errors, compile_knn if probe else None)
        train = rest[0] if rest else None
    out: dict[str, float] = {"test/mse": float(np.mean(test["mse"]))}
    if "bce" in test:
        out["test/bce"] = float(np.mean(test["bce"]))
    if data.unit_range:
        out["test/psnr"] = metrics.psnr(out["test/mse"])

    with parts.part("pca"):
        if pca_mse is None:  # the basis and its test error kept beside the data, when the loader gives a folder
            split = "train" if not streamed else f"train[:{len(x_train)}]"
            pca_mse, variance, _ = pca.baseline(x_train, data.x_test, model.latent_dim, data.cache_dir, split)
        else:
            variance = pca.variance(data.x_test)
        out["test/pca_mse"] = pca_mse
        # With as many codes as the data has directions of variance, PCA reconstructs (to float rounding)
        # exactly and a ratio to its error means nothing: none is given (null in summary.json).
        lossless = out["test/pca_mse"] <= PCA_LOSSLESS * variance
        out["test/ae_pca_ratio"] = None if lossless else out["test/mse"] / out["test/pca_mse"]

    out.update(code_metrics(model, graphdef, params, data.x_test, test["z"], test["mse"], data.ground_truth, batch))

    if probe:
        y_train = data.y_train[: len(train["z"])]
        z_test, y_test = test["z"][seen], data.y_test[seen]
        with parts.part("probe"):  # kNN's search runs on the device meanwhile: the knn part is what is left of it
            search = knn.knn_accuracy_search(train["z"], y_train, z_test, y_test, e.knn_k,
                                              program=knn_program[0] if knn_program else None)
            out["test/probe_accuracy"] = probes.linear_probe_accuracy(train["z"], y_train, z_test, y_test)
        with parts.part("knn"):
            out["test/knn_accuracy"] = search()

    if model.head == "gaussian" and recon == "bce":  # a VAE with a Bernoulli decoder
        n = min(e.iwae_examples, len(data.x_test))
        with parts.part("iwae"):
            elbo, iwae = _iwae_bounds(graphdef, params, data.x_test[:n], test["z"][:n], test["logvar"][:n],
                                      (1, e.iwae_samples), key, batch)
        out["test/elbo"] = float(np.mean(elbo))  # one sample: the ELBO
        out["test/iwae_nll"] = -float(np.mean(iwae))
        out["test/active_units"] = metrics.active_units(test["z"])

    if e.anomaly is not None:
        from aejax.analysis.anomaly import anomaly_metrics

        check_labels_for_anomaly(data)
        with parts.part("anomaly"):
            normal = np.isin(data.y_test, list(e.anomaly.normal_classes))
            # the threshold: the errors of every training example at hand (all of an in-memory split)
            errors = (train["mse"] if len(train["mse"]) == len(x_train)
                      else _per_example(graphdef, params, [x_train], batch)[0]["mse"])
            out.update(anomaly_metrics(normal, errors, test["mse"], x_train, data.x_test, model.latent_dim,
                                       e.anomaly.percentile))
    return out


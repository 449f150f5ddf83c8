"""aejax-report's figures, read back from the Figures it drew (what was plotted, not pixels): one
objective per axis, each dataset with its own PCA baseline, labels that do not overlap."""
import json

import numpy as np
from matplotlib.collections import LineCollection
from omegaconf import OmegaConf

from aejax import report
from aejax.reporting.plots import plot_by_series, plot_loss_curves, plot_vs_latent_dim

VARIANTS = {"vanilla": {"name": "vanilla", "recon": "mse", "terms": {}},
            "vae": {"name": "vae", "recon": "bce", "head": "gaussian", "terms": {"kl": {"weight": 1.0}}}}
PCA = {("digits", 2): 0.053, ("digits", 4): 0.04, ("line2d", 2): 0.0, ("line2d", 4): 0.0}


def _runs(root, datasets=("digits", "line2d"), variants=("vanilla", "vae"), ks=(2,)):
    """A sweep of made-up runs: val/loss is the objective (BCE+KL ~ 30x the MSE for the VAE)."""
    i = 0
    for dataset in datasets:
        for variant in variants:
            for k in ks:
                run = root / str(i)
                run.mkdir(parents=True)
                mse = 0.01 * (i + 1)
                loss = mse if variant == "vanilla" else 0.3 + mse
                (run / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(
                    {"seed": 0, "model": {"latent_dim": k}, "variant": VARIANTS[variant], "dataset": {"name": dataset}})))
                (run / "summary.json").write_text(json.dumps({"status": "finished", "val/loss": loss, "val/mse": mse,
                                                             "test/mse": mse, "test/pca_mse": PCA[dataset, k]}))
                (run / "metrics.jsonl").write_text("".join(json.dumps(
                    {"step": e, "epoch": e, "train/loss": loss + 0.1 / (e + 1), "val/loss": loss + 0.1 / (e + 1),
                     "val/mse": mse + 0.01 / (e + 1)}) + "\n" for e in range(3)))
                i += 1
    return report.load_runs(root)


def test_the_default_metric_is_the_shared_mse_when_objectives_differ_and_the_report_says_so(tmp_path):
    runs, varied = _runs(tmp_path / "sweep")
    assert report.choose_metric(runs, None) == ("val/mse", "plotted: val/mse, not val/loss: the runs' objectives differ "
                                                "(bce + kl (1.0); mse), so each val/loss is on its own scale; val/mse "
                                                "(per value) is shared by all")
    assert report.choose_metric(runs, "val/loss")[0] == "val/mse"  # asked for: still not mixed
    assert report.choose_metric(runs, "test/mse")[0] == "test/mse"
    same, _ = _runs(tmp_path / "vanilla_only", variants=("vanilla",))
    assert report.choose_metric(same, None) == ("val/loss", "plotted: val/loss (the objective: mse)")

    assert report.main([str(tmp_path / "sweep")]) == 0
    assert "plotted: val/mse, not val/loss" in (tmp_path / "sweep" / "report.md").read_text()
    fig = plot_loss_curves(runs, varied, tmp_path / "curves.png", ("val/mse",))
    (ax,) = fig.axes
    assert ax.get_title() == "val/mse, 4 runs"
    assert sorted(round(float(line.get_ydata()[-1]), 6) for line in ax.get_lines()) == [
        round(0.01 * (i + 1) + 0.01 / 3, 6) for i in range(4)]  # every run's val/mse, no objective


def test_each_dataset_has_its_own_pca_baseline_and_labels_one_parameter_per_line(tmp_path):
    runs, varied = _runs(tmp_path / "sweep")
    fig = plot_by_series(runs, varied, "val/mse", tmp_path / "bars.png")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["variant=vanilla\ndataset=digits", "variant=vae\ndataset=digits",
                      "variant=vanilla\ndataset=line2d", "variant=vae\ndataset=line2d"]
    marks = [c for c in ax.collections if isinstance(c, LineCollection)]  # the dashed PCA marks, bar by bar
    heights = [seg[0][1] for c in marks for seg in c.get_segments()]
    assert heights == [0.053, 0.053, 0.0, 0.0]  # each bar's own dataset's PCA, not their mean 0.0265
    renderer = fig._get_renderer()  # the renderer savefig drew with (Agg)
    boxes = [t.get_window_extent(renderer) for t in ax.get_xticklabels()]
    assert not any(a.overlaps(b) for a, b in zip(boxes, boxes[1:]))

    sweep, varied = _runs(tmp_path / "bottleneck", ks=(2, 4))
    fig = plot_vs_latent_dim(sweep, varied, "val/mse", tmp_path / "k.png")
    pca = {line.get_label(): list(np.asarray(line.get_ydata(), float)) for line in fig.axes[0].get_lines()
           if line.get_label().startswith("PCA")}
    assert pca == {"PCA, k components on digits (test MSE)": [0.053, 0.04],
                   "PCA, k components on line2d (test MSE)": [0.0, 0.0]}

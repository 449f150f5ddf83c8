"""The explorer's views: 3-D data, the decoder run in the page, baselines, axes, trails, the layout at
1280x800 and ``--follow``; in a real headless Chromium where it takes a browser."""
from __future__ import annotations

import json
import math
import re
import threading
from pathlib import Path

import numpy as np
import pytest

from aejax import rundir
from aejax.analysis import explorer_data as data_module
from aejax.analysis.dense_decoder import decode, from_snapshot
from aejax.analysis.explorer import follow, write_explorer
from aejax.analysis.explorer_data import explorer_data
from explorer_helpers import browser, fake_run, mouse_to, open_page, pixels, set_slider  # noqa: F401

API = "return window.aejaxExplorer."


@pytest.fixture(scope="module")
def layers3d_run(tmp_path_factory):
    """A real run of the interactive introduction's 3-D part (3 -> 2 -> 3): (run dir, trained model)."""
    from conftest import compose_config

    from aejax.experiment import run_all

    run_dir = tmp_path_factory.mktemp("layers3d")
    (result,) = run_all(compose_config("+experiment=interactive_intro", "trainer.epochs=4", "snapshot.probe_size=90",
                                       "snapshot.images=false", "eval.enabled=false", "logger.mode=disabled",
                                       "trainer.progress=off"), run_dir)
    return run_dir, result.model


def _snaps(run_dir: Path) -> list[dict]:
    return [dict(np.load(f)) for f in sorted((run_dir / "snapshots").glob("step_*.npz"))]


# ---- the data the page gets ----

def test_each_snapshot_holds_the_decoder_that_decodes_as_the_model(layers3d_run):
    import jax.numpy as jnp

    run_dir, model = layers3d_run
    layers = from_snapshot(_snaps(run_dir)[-1])  # the last snapshot: the trained model
    assert layers is not None and layers.output == "identity"  # one layer: no hidden activation runs
    assert [np.shape(w) for w, _ in layers.weights] == [(2, 3)]  # the dense 2 -> 3 decoder of the article
    z = np.random.default_rng(0).normal(size=(16, 2)).astype(np.float32) * 3
    np.testing.assert_allclose(decode(layers, z), np.asarray(model.decode(jnp.asarray(z))), atol=1e-5)


def test_baselines_are_the_losses_of_outputs_that_ignore_the_input():
    x = np.array([[0.0, 1.0, 0.5, 0.0], [1.0, 1.0, 0.0, 0.25]], np.float32)
    bce = {b["label"]: b["value"] for b in data_module._baselines(x, "bce")}
    assert bce["output 0.5 everywhere: ln 2"] == pytest.approx(math.log(2), rel=1e-3)
    by_hand = np.mean([-v * math.log(1e-7) - (1 - v) * math.log(1 - 1e-7) for v in x.ravel()])
    assert bce["all-zeros output (clipped at 1e-07)"] == pytest.approx(by_hand, rel=1e-3)
    mse = {b["label"]: b["value"] for b in data_module._baselines(x, "mse")}
    assert mse["all-zeros output"] == pytest.approx(np.mean(x ** 2), rel=1e-3)
    assert mse["the mean example as output"] == pytest.approx(np.mean((x - x.mean(axis=0)) ** 2), rel=1e-3)
    assert data_module._baselines(x, None) == []


def test_decoder_weights_within_the_budget_keep_the_last_snapshot(layers3d_run, monkeypatch):
    run_dir, _ = layers3d_run
    n = len(_snaps(run_dir))
    assert all("decoder" in s for s in explorer_data(run_dir)["snapshots"])  # 6 floats each: all of them
    monkeypatch.setattr(data_module, "DECODER_BUDGET", 2 * (6 + 3) * 4)  # room for two snapshots' weights
    kept = [i for i, s in enumerate(explorer_data(run_dir)["snapshots"]) if "decoder" in s]
    assert kept == [0, n - 1]


# ---- in the browser ----

def _ring_is_drawn(driver, canvas: str, x: float, y: float, radius: float = 7) -> bool:
    """Most of a black circle of ``radius`` around (x, y): the hover mark."""
    angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    rgba = pixels(driver, canvas, [(x + radius * np.cos(a), y + radius * np.sin(a)) for a in angles])
    return int(np.sum(rgba[:, :3].max(axis=1) < 90)) >= 10


def _isolated(points: np.ndarray, lo: float, hi: float) -> int:
    """The point farthest from all others, inside [lo, hi] in both coordinates."""
    distance = np.hypot(*(points[:, None, :] - points[None, :, :]).transpose(2, 0, 1)) + np.eye(len(points)) * 1e9
    inside = ((points > lo) & (points < hi)).all(axis=1)
    return int(np.argmax(np.where(inside, distance.min(axis=1), -1)))


def test_3d_views_rotate_and_hover_is_linked_across_input_latent_and_reconstruction(browser, layers3d_run, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains

    run_dir, model = layers3d_run
    driver = open_page(browser, write_explorer(run_dir, tmp_path / "page.html"))
    for view in ("view3d-input", "view3d-recon"):
        assert driver.find_element("id", view).is_displayed()
    n = len(driver.execute_script(API + "data.labels"))

    # dragging one view turns both: 0.01 rad per pixel
    before = driver.execute_script(API + "view3d")
    images = [driver.execute_script(f"return document.getElementById('{v}').toDataURL()") for v in ("view3d-input", "view3d-recon")]
    ActionChains(driver).click_and_hold(driver.find_element("id", "view3d-input")).move_by_offset(60, 20).release().perform()
    after = driver.execute_script(API + "view3d")
    assert after["yaw"] == pytest.approx(before["yaw"] + 0.6, abs=0.02)
    assert after["pitch"] == pytest.approx(before["pitch"] + 0.2, abs=0.02)
    assert [driver.execute_script(f"return document.getElementById('{v}').toDataURL()")
            for v in ("view3d-input", "view3d-recon")] != images

    # hovering a point of the 3-D input marks it in the latent scatter and the 3-D reconstruction
    inputs = np.array([list(driver.execute_script(API + "point3dToPixel('input', arguments[0])", i).values()) for i in range(n)])
    target = _isolated(inputs, 20, 290)
    mouse_to(driver, *inputs[target], element_id="view3d-input")
    assert driver.execute_script(API + "hovered") == target
    assert f"probe point {target} " in driver.find_element("id", "hover-info").text
    z = driver.execute_script(API + "pointToPixel(arguments[0])", target)
    assert _ring_is_drawn(driver, "scatter", z["x"], z["y"])
    r = driver.execute_script(API + "point3dToPixel('recon', arguments[0])", target)
    assert _ring_is_drawn(driver, "view3d-recon", r["x"], r["y"])

    # and hovering in the latent scatter marks the point in both 3-D views
    latent = np.array([list(driver.execute_script(API + "pointToPixel(arguments[0])", i).values()) for i in range(n)])
    other = _isolated(np.where(np.arange(n)[:, None] == target, -1e6, latent), 70, 420)
    mouse_to(driver, *latent[other])
    assert driver.execute_script(API + "hovered") == other
    for view in ("input", "recon"):
        p = driver.execute_script(API + "point3dToPixel(arguments[0], arguments[1])", view, other)
        assert _ring_is_drawn(driver, f"view3d-{view}", p["x"], p["y"])

    # a click decodes the exact code with the trained decoder, shown as a cross in the 3-D reconstruction
    import jax.numpy as jnp

    mouse_to(driver, 250, 150, click=True)
    clicked = driver.execute_script(API + "clicked")
    expected = np.asarray(model.decode(jnp.asarray([clicked], jnp.float32)))[0]
    np.testing.assert_allclose(driver.execute_script(API + "decoded"), expected, atol=1e-4)
    shown = re.search(r"decoded at z = \([^)]*\): \(([^)]*)\)", driver.find_element("id", "decoded-info").text)
    np.testing.assert_allclose([float(v) for v in shown.group(1).split(",")], expected, rtol=5e-3, atol=1e-3)
    assert not [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


@pytest.mark.parametrize("kind", ["layers3d", "image"])
def test_the_page_fits_1280x800_with_no_horizontal_scroll(browser, layers3d_run, tmp_path, kind):
    run_dir = layers3d_run[0] if kind == "layers3d" else fake_run(tmp_path / "run", shape=(28, 28, 1))
    browser.set_window_size(1280, 800)
    try:
        driver = open_page(browser, write_explorer(run_dir, tmp_path / "page.html"))
        width = driver.execute_script("return window.innerWidth")
        assert width >= 1200 and driver.execute_script("return document.documentElement.scrollWidth") <= width
        overflow = driver.execute_script(
            "return [...document.body.querySelectorAll('*')].filter((e) => e.getClientRects().length && "
            "e.getBoundingClientRect().right > window.innerWidth + 0.5).map((e) => e.id || e.tagName)")
        assert overflow == []
        box = driver.execute_script(API + "lossBox")
        assert box["xticks"] and all(0 <= t["left"] and t["right"] <= box["W"] for t in box["xticks"])
        caption = driver.find_element("id", "caption").rect
        assert caption["x"] >= 0 and caption["x"] + caption["width"] <= width
    finally:
        browser.set_window_size(1280, 1000)


def test_axes_fit_each_snapshot_and_trails_stay_visible(browser, layers3d_run, tmp_path):
    run = fake_run(tmp_path / "run", shape=(8, 8, 1))  # step 0's codes span a fifth of the last's
    driver = open_page(browser, write_explorer(run, tmp_path / "page.html"))
    box = driver.execute_script(API + "scatterBox")
    plot = box["size"] - box["l"] - box["r"]
    set_slider(driver, 0)

    def spread():
        xs = [driver.execute_script(API + "pointToPixel(arguments[0])", i)["x"] for i in range(40)]
        return max(xs) - min(xs)

    assert spread() > 0.85 * plot  # fitted: step 0 fills the plot, not a dot
    driver.find_element("id", "fixed-toggle").click()
    assert spread() < 0.6 * plot  # one extent for all snapshots: step 0 is smaller

    run_dir, _ = layers3d_run  # a real run's last snapshot: most trails long enough to see, none huge
    driver = open_page(browser, write_explorer(run_dir, tmp_path / "page3d.html"))
    box = driver.execute_script(API + "scatterBox")
    plot = box["size"] - box["l"] - box["r"]
    lengths = np.hypot(*np.array(driver.execute_script(API + "trailVectors()")).T)
    assert np.mean(lengths >= 3) >= 0.5 and lengths.max() <= 0.12 * plot + 1e-6
    assert np.percentile(lengths, 75, method="lower") == pytest.approx(0.04 * plot, rel=1e-6)


def test_follow_rewrites_the_page_while_the_run_trains(tmp_path):
    run = fake_run(tmp_path / "run", steps=(0, 10))
    rundir.write_summary(run, {"status": "running"})
    out, lines = run / "explorer.html", []
    thread = threading.Thread(target=follow, args=(run, None, 0.05, lines.append), daemon=True)
    thread.start()

    def page() -> dict:
        html = out.read_text() if out.exists() else ""
        found = re.search(r'<script id="aejax-data" type="application/json">(.*?)</script>', html, re.DOTALL)
        return json.loads(found.group(1)) if found else {}

    def wait_for(condition):
        for _ in range(400):
            if condition():
                return
            thread.join(0.05)
        raise AssertionError(lines)

    wait_for(lambda: len(page().get("snapshots", [])) == 2)
    assert page()["follow"] == {"seconds": 0.05}
    more = dict(np.load(run / "snapshots" / "step_0000010.npz"))
    more["step"] = np.int64(20)
    np.savez(run / "snapshots" / "step_0000020.npz", **more)
    wait_for(lambda: [s["step"] for s in page().get("snapshots", [])] == [0, 10, 20])
    rundir.write_summary(run, {"status": "finished"})
    thread.join(10)
    assert not thread.is_alive() and page()["follow"] is None  # the final page does not reload
    assert "finished" in lines[-1]


def test_a_followed_page_reloads_with_new_snapshots_and_keeps_the_readers_place(browser, tmp_path):
    from selenium.webdriver.support.ui import WebDriverWait

    run = fake_run(tmp_path / "run", steps=(0, 10, 20))
    out = write_explorer(run, reload_every=1.0)
    driver = open_page(browser, out)
    assert driver.find_element("id", "follow-bar").is_displayed()
    set_slider(driver, 1)
    more = dict(np.load(run / "snapshots" / "step_0000020.npz"))
    more["step"] = np.int64(30)
    np.savez(run / "snapshots" / "step_0000030.npz", **more)
    write_explorer(run, reload_every=1.0)
    WebDriverWait(driver, 15).until(lambda d: d.execute_script(
        "return window.aejaxExplorer && window.aejaxExplorer.data.snapshots.length") == 4)
    assert driver.execute_script(API + "current") == 1  # the reader's snapshot, not the newest
    driver.find_element("id", "follow-toggle").click()  # stop reloading


def test_follow_on_an_ended_run_writes_the_page_once_and_a_bad_interval_is_exit_2(tmp_path, capsys):
    from aejax.analysis.explorer import main

    run = fake_run(tmp_path / "run")
    rundir.write_summary(run, {"status": "failed"})
    assert main(["--follow", str(run), "--interval", "0.01"]) == 0
    assert "the run is failed: wrote the final page" in capsys.readouterr().out
    assert '"follow":null' in (run / "explorer.html").read_text()
    assert main([str(run), "--interval", "0"]) == 2 and "--interval must be > 0" in capsys.readouterr().err


@pytest.mark.parametrize("overrides,exported", [
    (["decoder=conv", "encoder=conv"], False),  # the page cannot run it: the decoded grid instead
    (["decoder.norm=layer"], False),
    (["model.dtype=bfloat16"], False),
    (["decoder.tied=true"], True),
    (["decoder.activation=gelu"], True),
])
def test_which_decoders_the_page_runs_and_the_export_decodes_as_the_model(overrides, exported):
    import jax
    import jax.numpy as jnp

    from conftest import compose_config

    from aejax.analysis.dense_decoder import dense_layers
    from aejax.assemble import build_model

    cfg = compose_config("dataset=digits", *overrides)
    model = build_model(cfg, (8, 8, 1), "sigmoid", jax.random.key(0))
    layers = dense_layers(model)
    assert (layers is not None) == exported
    if exported:
        z = np.random.default_rng(1).normal(size=(5, 2)).astype(np.float32)
        np.testing.assert_allclose(decode(layers, z), np.asarray(model.decode(jnp.asarray(z))).reshape(5, -1),
                                   atol=1e-5)

"""`aejax-explore`: the page it writes, checked as a file and in a real headless Chromium."""
from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from aejax.analysis.explorer import main, write_explorer
from explorer_helpers import (as_uint8, browser, fake_run, ink, mouse_to, open_page, pixels,  # noqa: F401
                              set_slider, shown_image, wait_for_ink)


# ---- the page as a file ----

@pytest.mark.parametrize("shape,k", [((8, 8, 1), 2), ((3,), 2), ((8, 8, 3), 8), ((3,), 1)])
def test_the_page_is_self_contained_and_holds_every_snapshot(tmp_path, shape, k):
    run = fake_run(tmp_path / "run", shape=shape, k=k)
    out = write_explorer(run)
    assert out == run / "explorer.html"
    html = out.read_text()
    # no external resources: nothing fetched by src= / href=, no URL at all
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.IGNORECASE)
    assert "http://" not in html and "https://" not in html
    data = json.loads(re.search(r'<script id="aejax-data" type="application/json">(.*?)</script>', html, re.DOTALL).group(1))
    assert [s["step"] for s in data["snapshots"]] == [0, 469, 938] and data["k"] == k
    assert data["kind"] == ("image" if len(shape) > 1 else "vector")
    assert all(("grid" in s) == (k == 2) for s in data["snapshots"])
    x0, x1, y0, y1 = data["extent"]  # one extent over every snapshot's points
    points = np.concatenate([np.array(s["z"], float) for s in data["snapshots"]])
    assert x0 < points[:, 0].min() and points[:, 0].max() < x1 and y0 < points[:, 1].min() and points[:, 1].max() < y1
    assert data["header"]["variant"] == "vanilla" and data["header"]["latent_dim"] == k
    if len(shape) > 1:  # image atlases: tile i of the probe atlas is probe input i as uint8
        atlas = data["probe"]
        image = np.asarray(Image.open(io.BytesIO(base64.b64decode(atlas["src"].split(",", 1)[1]))))
        assert image.shape[:2] == (-(-40 // atlas["cols"]) * 8, atlas["cols"] * 8) and image.ndim == (2 if shape[2] == 1 else 3)
        r, c = divmod(13, atlas["cols"])
        with np.load(run / "snapshots" / "probe.npz") as f:
            expected = np.round(np.clip(f["x"][13], 0, 1) * 255).astype(np.uint8)
        np.testing.assert_array_equal(image[r * 8:(r + 1) * 8, c * 8:(c + 1) * 8].reshape(expected.shape), expected)
        assert all(s["recon"]["src"].startswith("data:image/png;base64,") for s in data["snapshots"])

def test_the_cli_writes_the_page_and_says_where(tmp_path, capsys):
    run = fake_run(tmp_path / "run")
    assert main([str(run), "-o", str(tmp_path / "page.html")]) == 0
    assert (tmp_path / "page.html").is_file() and "page.html" in capsys.readouterr().out


def test_a_run_without_snapshots_is_exit_2_with_what_to_do(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    assert main([str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "run" / "snapshots") in err and "snapshot.every" in err
    assert main([str(tmp_path / "nope")]) == 2 and "is not a directory" in capsys.readouterr().err
    result = subprocess.run([sys.executable, "-m", "aejax.analysis.explorer", str(tmp_path / "run")],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2 and result.stderr.startswith("aejax-explore: no snapshots in ")


# ---- the page in a real headless browser ----

@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A real run: 2-D codes of the digits, a snapshot after each of 3 epochs; (run dir, trained model)."""
    from conftest import compose_config

    from aejax.experiment import run_all

    run_dir = tmp_path_factory.mktemp("trained")
    (result,) = run_all(compose_config("trainer.epochs=3", "snapshot.every=1", "snapshot.probe_size=120",
                                       "eval.enabled=false", "logger.mode=disabled", "trainer.progress=off"), run_dir)
    return run_dir, result.model


def _red_columns(driver, rows) -> set[int]:
    """Columns of the loss curve with the red step marker (#d62728) in every one of ``rows``."""
    width = driver.execute_script("return window.aejaxExplorer.lossBox.W")
    found = None
    for y in rows:
        rgba = pixels(driver, "loss-curve", [(x, y) for x in range(width)])
        red = {x for x, (r, g, b, a) in enumerate(rgba) if a > 0 and r > 150 and g < 110 and b < 110}
        found = red if found is None else found & red
    return found


@pytest.mark.parametrize("shape,k", [("trained", 2), ((8, 8, 1), 2), ((3,), 2), ((8, 8, 3), 8)])
def test_the_page_works_in_a_headless_browser(browser, tmp_path, shape, k, request):
    from selenium.webdriver.support.ui import WebDriverWait

    run_dir, model = (request.getfixturevalue("trained_run") if shape == "trained"
                      else (fake_run(tmp_path / "run", shape=shape, k=k), None))
    driver = open_page(browser, write_explorer(run_dir, tmp_path / "page.html"))
    api = "return window.aejaxExplorer."
    files = sorted((run_dir / "snapshots").glob("step_*.npz"))
    snaps = [dict(np.load(f)) for f in files]
    probe = dict(np.load(run_dir / "snapshots" / "probe.npz"))
    image = probe["x"].ndim > 2
    last = len(files) - 1
    assert last >= 2 and driver.execute_script(api + "current") == last  # opens at the last snapshot

    # the loss curve marks the snapshot's step: x = margin + step / last step * plot width
    steps = [int(json.loads(line)["step"]) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    step_max = max(1, *steps, *(int(sn["step"]) for sn in snaps))

    box = driver.execute_script(api + "lossBox")

    def marker_at(i):
        columns = _red_columns(driver, range(30, 150, 20))
        assert columns, "no step marker"
        width = box["W"] - box["l"] - box["r"]
        assert abs(np.mean(sorted(columns)) - (box["l"] + int(snaps[i]["step"]) / step_max * width)) <= 1.0, (i, columns)

    marker_at(last)

    # the slider changes the plotted snapshot, and the marker moves with it
    before = driver.execute_script("return document.getElementById('scatter').toDataURL()")
    set_slider(driver, 0)
    assert driver.execute_script(api + "current") == 0
    assert driver.execute_script("return document.getElementById('scatter').toDataURL()") != before
    assert f"step {int(snaps[0]['step'])} " in driver.find_element("id", "snapshot-label").text
    marker_at(0)
    # the trails toggle redraws without them
    with_trails = driver.execute_script("return document.getElementById('scatter').toDataURL()")
    driver.find_element("id", "trails-toggle").click()
    without_trails = driver.execute_script("return document.getElementById('scatter').toDataURL()")
    assert without_trails != with_trails

    # the manifold toggle (image codes in 2-D only) draws the decoded grid in place of the points: each tile
    # opaque and square, centred on its grid point
    label = driver.find_element("id", "manifold-label")
    sb = driver.execute_script(api + "scatterBox")  # the scatter's size and margins
    if image and k == 2:
        grid = snaps[0]
        g1, g2, tiles = grid["grid_z1"], grid["grid_z2"], grid["grid_decoded"].astype(np.float32)
        n = len(g1)
        z_px = np.array([list(driver.execute_script(api + "pointToPixel(arguments[0])", i).values())
                         for i in range(len(probe["labels"]))])
        corner = [driver.execute_script(api + "dataToPixel(arguments[0], arguments[1])", float(g1[t]), float(g2[t]))
                  for t in (0, n - 1)]
        side = min(abs(corner[1]["x"] - corner[0]["x"]), abs(corner[1]["y"] - corner[0]["y"])) / (n - 1)
        candidates = []  # (a tile's centre on the canvas, its pixels' range): away from every point
        for i in range(n):
            for j in range(n):
                c = driver.execute_script(api + "dataToPixel(arguments[0], arguments[1])", float(g1[j]), float(g2[i]))
                tile = np.round(np.clip(tiles[i * n + j], 0, 1) * 255).reshape(-1, tiles.shape[-1])
                inside = sb["l"] + 2 < c["x"] < sb["size"] - sb["r"] - 2 and sb["t"] + 2 < c["y"] < sb["size"] - sb["b"] - 2
                if inside and np.min(np.hypot(*(z_px - [c["x"], c["y"]]).T)) > 4:
                    candidates.append(((c["x"], c["y"]), tile.min(axis=0), tile.max(axis=0)))
        assert len(candidates) >= 3 and side > 8
        points = [p for p, _, _ in candidates]
        plain = pixels(driver, "scatter", points)[:, :3]  # white, or an axis line
        driver.find_element("id", "manifold-toggle").click()
        WebDriverWait(driver, 10).until(lambda d: (pixels(d, "scatter", points)[:, :3] != plain).any())  # decoded
        shown = pixels(driver, "scatter", points)[:, :3]
        lo = np.array([v for _, v, _ in candidates])  # the tile's own pixels, not blended with the white plane
        hi = np.array([v for _, _, v in candidates])
        assert ((lo - 2 <= shown) & (shown <= hi + 2)).all(), (shown, lo, hi)
        driver.find_element("id", "manifold-toggle").click()
        assert driver.execute_script("return document.getElementById('scatter').toDataURL()") == without_trails
    else:
        assert not label.is_displayed()
    driver.find_element("id", "trails-toggle").click()

    # hovering an isolated point (no other within the hover radius) shows that point's input and reconstruction
    assert ink(driver, "hover-input") == 0 and ink(driver, "hover-recon") == 0
    px = np.array([list(driver.execute_script(api + "pointToPixel(arguments[0])", i).values())
                   for i in range(len(probe["labels"]))])
    distance = np.hypot(*(px[:, None, :] - px[None, :, :]).transpose(2, 0, 1)) + np.eye(len(px)) * 1e9
    inside = ((px[:, 0] > sb["l"] + 14) & (px[:, 0] < sb["size"] - sb["r"] - 14)
              & (px[:, 1] > sb["t"] + 14) & (px[:, 1] < sb["size"] - sb["b"] - 14))
    target = int(np.argmax(np.where(inside, distance.min(axis=1), -1)))
    assert distance[target].min() > 2 * 7  # no other point within the radius of the target
    mouse_to(driver, px[target, 0] + 2, px[target, 1] - 1)
    assert driver.execute_script(api + "hovered") == target
    info = driver.find_element("id", "hover-info").text
    label_name = str(probe["class_names"][probe["labels"][target]]) if "class_names" in probe else ""
    assert f"probe point {target} (test example {int(probe['index'][target])}), class {int(probe['labels'][target])}" in info
    assert label_name in info and f"loss {float(snaps[0]['loss'][target]):.4g}" in info
    if image:
        wait_for_ink(driver, "hover-input")
        wait_for_ink(driver, "hover-recon")
        np.testing.assert_array_equal(shown_image(driver, "hover-input", probe["x"].shape[1:]),
                                      as_uint8(probe["x"][target]))
        recon = shown_image(driver, "hover-recon", probe["x"].shape[1:])
        assert np.abs(recon - as_uint8(snaps[0]["recon"][target])).max() <= 1  # float16 rounding
    else:  # vectors: the numbers, written out
        shown = re.search(r"input \(([^)]*)\) → reconstruction \(([^)]*)\)", info)
        np.testing.assert_allclose([float(v) for v in shown.group(1).split(",")], probe["x"][target], rtol=5e-3)
        np.testing.assert_allclose([float(v) for v in shown.group(2).split(",")],  # 3 significant digits
                                   snaps[0]["recon"][target].astype(np.float32), rtol=5e-3)

    # clicking in the plane decodes there (2-D codes). A trained dense decoder runs in the page at the clicked
    # code and matches the trained model's own decoder; otherwise the grid cell nearest the click, as numpy finds it
    decoded_info = driver.find_element("id", "decoded-info")
    if k == 2:
        assert ink(driver, "decoded-click") == 0
        if model is not None:  # the last snapshot is the trained model's
            set_slider(driver, last)
        mouse_to(driver, 300, 200, click=True)
        clicked = driver.execute_script(api + "clicked")
        assert clicked is not None
        at = driver.execute_script(api + "dataToPixel(arguments[0], arguments[1])", *clicked)
        assert abs(at["x"] - 300) <= 1 and abs(at["y"] - 200) <= 1
        if model is not None:
            import jax.numpy as jnp

            assert driver.execute_script(api + "exactDecoder") and "Exact" in driver.find_element("id", "decoder-mode").text
            expected = np.asarray(model.decode(jnp.asarray([clicked], jnp.float32)))[0]
            decoded = np.array(driver.execute_script(api + "decoded"))
            np.testing.assert_allclose(decoded, expected.ravel(), atol=1e-4)
            assert f"decoded at z = ({clicked[0]:.4g}, {clicked[1]:.4g})" in decoded_info.text
            wait_for_ink(driver, "decoded-click")
            assert np.abs(shown_image(driver, "decoded-click", expected.shape) - as_uint8(expected)).max() <= 1
            set_slider(driver, 0)
        else:
            assert not driver.execute_script(api + "exactDecoder")
            assert "nearest point" in driver.find_element("id", "decoder-mode").text
            g1, g2 = snaps[0]["grid_z1"], snaps[0]["grid_z2"]
            j, i = int(np.argmin(np.abs(g1 - clicked[0]))), int(np.argmin(np.abs(g2 - clicked[1])))
            cell = snaps[0]["grid_decoded"][i * len(g1) + j].astype(np.float32)
            assert f"nearest point ({float(g1[j]):.4g}, {float(g2[i]):.4g})" in decoded_info.text
            if image:
                wait_for_ink(driver, "decoded-click")
                assert np.abs(shown_image(driver, "decoded-click", cell.shape) - as_uint8(cell)).max() <= 1
            else:
                values = re.search(r"grid: \(([^)]*)\)", decoded_info.text).group(1)
                np.testing.assert_allclose([float(v) for v in values.split(",")], cell, rtol=5e-3)
    else:
        assert "needs a 2-D code" in decoded_info.text

    # play steps through the snapshots, and pauses
    driver.execute_script(  # every snapshot shown from here on, in order
        "window.shown = []; new MutationObserver(() => window.shown.push(window.aejaxExplorer.current))"
        ".observe(document.getElementById('snapshot-label'), {childList: true, characterData: true, subtree: true});")
    play = driver.find_element("id", "play")
    play.click()
    assert play.text == "pause"
    WebDriverWait(driver, 10).until(lambda d: len(d.execute_script("return window.shown")) >= 2)
    play.click()
    assert play.text == "play"
    shown = driver.execute_script("return window.shown")
    assert shown[:2] == [1, 2] and all(b == (a + 1) % len(files) for a, b in zip(shown, shown[1:]))
    paused_at = driver.execute_script(api + "current")
    assert paused_at == shown[-1]
    driver.execute_script("return new Promise((done) => setTimeout(done, 1500))")  # two periods of the timer
    assert driver.execute_script("return window.shown") == shown  # paused: nothing more
    assert f"step {int(snaps[paused_at]['step'])} " in driver.find_element("id", "snapshot-label").text
    marker_at(paused_at)

    severe = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert not severe, severe

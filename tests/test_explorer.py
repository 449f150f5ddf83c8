"""`aejax-explore`: the page it writes, checked as a file and in a real headless Chromium."""
from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aejax.analysis.explorer import main, write_explorer

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def fake_run(root: Path, shape: tuple[int, ...] = (8, 8, 1), k: int = 2, probe: int = 40, steps=(0, 469, 938),
             grid: int = 6, classes: int = 4, seed: int = 0) -> Path:
    """A run directory in the format of ``aejax.analysis.snapshot``: probe.npz, step_XXXXXXX.npz
    (with a decoded grid when k == 2), config.yaml and metrics.jsonl. Codes spread out by class
    as the steps go on, so that the snapshots differ."""
    rng = np.random.default_rng(seed)
    run, snaps = root, root / "snapshots"
    snaps.mkdir(parents=True)
    labels = (np.arange(probe) % classes).astype(np.int32)
    unit = len(shape) > 1
    x = rng.random((probe, *shape), dtype=np.float32) if unit else rng.normal(size=(probe, *shape)).astype(np.float32)
    np.savez(snaps / "probe.npz", x=x, labels=labels, index=np.arange(probe, dtype=np.int64) * 3,
             class_names=np.array([f"class {c}" for c in range(classes)]), unit_range=np.array(unit))
    centers = rng.normal(size=(classes, k)) * 3
    for t, step in enumerate(steps):
        spread = t / max(len(steps) - 1, 1)
        z = (centers[labels] * (0.2 + spread) + rng.normal(size=(probe, k)) * 0.5).astype(np.float32)
        grad = rng.normal(size=(probe, k)).astype(np.float32) * (1.0 - 0.5 * spread)
        proj = np.eye(k, 2, dtype=np.float32)  # the first two axes stand in for PCA when k > 2
        recon = x + rng.normal(size=x.shape).astype(np.float32) * 0.3 / (1 + t)
        arrays = dict(step=np.int64(step), epoch=np.float64(step / 469), z=z, grad=grad, labels=labels,
                      loss=np.mean((recon - x).reshape(probe, -1) ** 2, axis=1).astype(np.float32),
                      z_2d=z @ proj, grad_2d=grad @ proj, recon=recon.astype(np.float16))
        if k == 2:
            lo, hi = z.min(axis=0) - 0.1, z.max(axis=0) + 0.1
            g1, g2 = np.linspace(lo[0], hi[0], grid, dtype=np.float32), np.linspace(lo[1], hi[1], grid, dtype=np.float32)
            decoded = rng.random((grid * grid, *shape), dtype=np.float32) * (spread + 0.1)
            arrays.update(grid_z1=g1, grid_z2=g2, grid_decoded=decoded.astype(np.float16))
        np.savez(snaps / f"step_{step:07d}.npz", **arrays)
    (run / "config.yaml").write_text(f"seed: {seed}\nmodel:\n  latent_dim: {k}\nvariant:\n  name: vanilla\n"
                                     f"dataset:\n  name: {'digits' if unit else 'layers3d'}\n")
    rows = [{"step": 0, "epoch": 0, "val/loss": 0.2}]
    rows += [{"step": s, "epoch": s / 469, "train/loss": 0.2 / (1 + i), "val/loss": 0.21 / (1 + i)}
             for i, s in enumerate(steps[1:], start=1)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


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
    assert 'id="snapshot-slider"' in html and 'id="trails-toggle"' in html
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
def browser():
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("needs Debian's chromium and chromium-driver (installed by .ci/run)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install -e '.[dev]')")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000",
                "--force-device-scale-factor=1"):
        options.add_argument(arg)
    options.binary_location = str(CHROMIUM)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    yield driver
    driver.quit()


def _open(driver, page: Path):
    driver.get(page.resolve().as_uri())
    driver.execute_script("return document.readyState")  # get() returns once the page has loaded
    severe = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert not severe, severe
    return driver


def _ink(driver, element_id: str) -> int:
    """How many pixels of a canvas are drawn (not transparent)."""
    return driver.execute_script(
        "const c = document.getElementById(arguments[0]);"
        "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n;", element_id)


def _wait_for_ink(driver, element_id: str) -> int:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 10).until(lambda d: _ink(d, element_id) > 0)  # atlases decode asynchronously
    return _ink(driver, element_id)


def _mouse_to(driver, x: float, y: float, click: bool = False):
    """Move the real mouse to (x, y) CSS pixels from the scatter canvas' top left."""
    from selenium.webdriver.common.action_chains import ActionChains

    canvas = driver.find_element("id", "scatter")
    size = canvas.size  # W3C offsets count from the element's centre
    chain = ActionChains(driver).move_to_element_with_offset(canvas, round(x - size["width"] / 2),
                                                             round(y - size["height"] / 2))
    (chain.click() if click else chain).perform()


def _set_slider(driver, value: int):
    driver.execute_script("const s = document.getElementById('snapshot-slider'); s.value = arguments[0];"
                          "s.dispatchEvent(new Event('input', {bubbles: true}));", str(value))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A real run: 2-D codes of the digits, a snapshot after each of 3 epochs."""
    from conftest import compose_config

    from aejax.experiment import run

    run_dir = tmp_path_factory.mktemp("trained")
    run(compose_config("trainer.epochs=3", "snapshot.every=1", "snapshot.probe_size=120", "eval.enabled=false",
                       "logger.mode=disabled", "trainer.progress=off"), run_dir)
    return run_dir


@pytest.mark.parametrize("shape,k", [("trained", 2), ((8, 8, 1), 2), ((3,), 2), ((8, 8, 3), 8)])
def test_the_page_works_in_a_headless_browser(browser, tmp_path, shape, k, request):
    run_dir = (request.getfixturevalue("trained_run") if shape == "trained"
               else fake_run(tmp_path / "run", shape=shape, k=k))
    driver = _open(browser, write_explorer(run_dir, tmp_path / "page.html"))
    api = "return window.aejaxExplorer."
    last = len(list((run_dir / "snapshots").glob("step_*.npz"))) - 1
    assert last >= 2 and driver.execute_script(api + "current") == last  # opens at the last snapshot

    # the slider changes the plotted snapshot
    before = driver.execute_script("return document.getElementById('scatter').toDataURL()")
    _set_slider(driver, 0)
    assert driver.execute_script(api + "current") == 0
    assert driver.execute_script("return document.getElementById('scatter').toDataURL()") != before
    assert "step 0 " in driver.find_element("id", "snapshot-label").text
    # the trails toggle redraws without them
    with_trails = driver.execute_script("return document.getElementById('scatter').toDataURL()")
    driver.find_element("id", "trails-toggle").click()
    assert driver.execute_script("return document.getElementById('scatter').toDataURL()") != with_trails
    driver.find_element("id", "trails-toggle").click()

    # hovering a point shows its input and reconstruction
    assert _ink(driver, "hover-input") == 0 and _ink(driver, "hover-recon") == 0
    target = 7
    p = driver.execute_script(api + "pointToPixel(arguments[0])", target)
    _mouse_to(driver, p["x"], p["y"])
    hovered = driver.execute_script(api + "hovered")
    assert hovered is not None
    q = driver.execute_script(api + "pointToPixel(arguments[0])", hovered)
    assert (q["x"] - p["x"]) ** 2 + (q["y"] - p["y"]) ** 2 <= 2 * 7**2  # the nearest point, within the radius
    assert _wait_for_ink(driver, "hover-input") > 0 and _wait_for_ink(driver, "hover-recon") > 0
    assert f"probe point {hovered}" in driver.find_element("id", "hover-info").text

    # clicking in the plane decodes there, for 2-D codes
    decoded_info = driver.find_element("id", "decoded-info")
    if k == 2:
        assert _ink(driver, "decoded-click") == 0
        _mouse_to(driver, 300, 200, click=True)
        assert driver.execute_script(api + "clicked") is not None
        assert _wait_for_ink(driver, "decoded-click") > 0 and "clicked z = (" in decoded_info.text
    else:
        assert "needs a 2-D code" in decoded_info.text

    # a real picture: many colours, not a blank page
    shot = np.asarray(Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB"))
    assert shot.std() > 20 and len(np.unique(shot.reshape(-1, 3), axis=0)) > 50
    severe = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert not severe, severe


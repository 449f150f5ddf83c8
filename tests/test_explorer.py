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


def _pixels(driver, element_id: str, points) -> np.ndarray:
    """The RGBA values of a canvas at ``points`` (canvas pixel coordinates, rounded down)."""
    return np.array(driver.execute_script(
        "const c = document.getElementById(arguments[0]).getContext('2d');"
        "return arguments[1].map(([x, y]) => Array.from(c.getImageData(Math.floor(x), Math.floor(y), 1, 1).data));",
        element_id, [[float(x), float(y)] for x, y in points]), dtype=float)


BOX = 150  # the example canvases of the page (CSS pixels; the browser runs at scale factor 1)


def _shown_image(driver, element_id: str, shape: tuple[int, ...]) -> np.ndarray:
    """The image an example canvas shows, read back at the centre of each source pixel: ``shape``."""
    h, w = shape[:2]
    scale = min(BOX / w, BOX / h)
    x0, y0 = (BOX - w * scale) / 2, (BOX - h * scale) / 2
    points = [(x0 + (c + 0.5) * scale, y0 + (r + 0.5) * scale) for r in range(h) for c in range(w)]
    rgba = _pixels(driver, element_id, points).reshape(h, w, 4)
    assert (rgba[..., 3] == 255).all()  # drawn everywhere
    return rgba[..., 0] if len(shape) == 2 or shape[2] == 1 else rgba[..., :3]


def _as_uint8(x: np.ndarray) -> np.ndarray:
    """How the page encodes an image in [0, 1]: 255 * x, rounded (``explorer._to_uint8``)."""
    y = np.round(np.clip(np.asarray(x, np.float32), 0, 1) * 255)
    return y[..., 0] if y.shape[-1] == 1 else y


def _red_columns(driver, rows) -> set[int]:
    """Columns of the loss curve with the red step marker (#d62728) in every one of ``rows``."""
    width = 340
    found = None
    for y in rows:
        rgba = _pixels(driver, "loss-curve", [(x, y) for x in range(width)])
        red = {x for x, (r, g, b, a) in enumerate(rgba) if a > 0 and r > 150 and g < 110 and b < 110}
        found = red if found is None else found & red
    return found


@pytest.mark.parametrize("shape,k", [("trained", 2), ((8, 8, 1), 2), ((3,), 2), ((8, 8, 3), 8)])
def test_the_page_works_in_a_headless_browser(browser, tmp_path, shape, k, request):
    from selenium.webdriver.support.ui import WebDriverWait

    run_dir = (request.getfixturevalue("trained_run") if shape == "trained"
               else fake_run(tmp_path / "run", shape=shape, k=k))
    driver = _open(browser, write_explorer(run_dir, tmp_path / "page.html"))
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

    def marker_at(i):
        columns = _red_columns(driver, range(30, 150, 20))
        assert columns, "no step marker"
        assert abs(np.mean(sorted(columns)) - (52 + int(snaps[i]["step"]) / step_max * 278)) <= 1.0, (i, columns)

    marker_at(last)

    # the slider changes the plotted snapshot, and the marker moves with it
    before = driver.execute_script("return document.getElementById('scatter').toDataURL()")
    _set_slider(driver, 0)
    assert driver.execute_script(api + "current") == 0
    assert driver.execute_script("return document.getElementById('scatter').toDataURL()") != before
    assert f"step {int(snaps[0]['step'])} " in driver.find_element("id", "snapshot-label").text
    marker_at(0)
    # the trails toggle redraws without them
    with_trails = driver.execute_script("return document.getElementById('scatter').toDataURL()")
    driver.find_element("id", "trails-toggle").click()
    without_trails = driver.execute_script("return document.getElementById('scatter').toDataURL()")
    assert without_trails != with_trails

    # the manifold toggle (image codes in 2-D only) draws the decoded grid behind the points, at 45 % opacity
    label = driver.find_element("id", "manifold-label")
    if image and k == 2:
        grid = snaps[0]
        g1, g2, tiles = grid["grid_z1"], grid["grid_z2"], grid["grid_decoded"].astype(np.float32)
        n = len(g1)
        z_px = np.array([list(driver.execute_script(api + "pointToPixel(arguments[0])", i).values())
                         for i in range(len(probe["labels"]))])
        x0, x1, y0, y1 = driver.execute_script(api + "data.extent")
        kx, ky = (560 - 56 - 14) / (x1 - x0), (560 - 14 - 44) / (y1 - y0)  # the plot's size in pixels / extent
        cw, ch = abs(g1[-1] - g1[0]) / (n - 1) * kx, abs(g2[-1] - g2[0]) / (n - 1) * ky  # one cell
        th, tw = tiles.shape[1:3]
        candidates = []  # (tile pixel centre on the canvas, its value): away from every point
        for i in range(n):
            for j in range(n):
                c = driver.execute_script(api + "dataToPixel(arguments[0], arguments[1])", float(g1[j]), float(g2[i]))
                tile = np.round(np.clip(tiles[i * n + j], 0, 1) * 255)
                for r, q in ((th // 2, tw // 2), (1, 1), (th - 2, tw - 2)):
                    x, y = c["x"] - cw / 2 + (q + 0.5) * cw / tw, c["y"] - ch / 2 + (r + 0.5) * ch / th
                    inside = 56 + 2 < x < 560 - 14 - 2 and 14 + 2 < y < 560 - 44 - 2
                    # the tile pixel or a neighbour (where the browser's scaling puts a tile pixel's edge
                    # differs by a canvas pixel in small cells)
                    near = tile[max(r - 1, 0):r + 2, max(q - 1, 0):q + 2].reshape(-1, tile.shape[-1])
                    if inside and np.min(np.hypot(*(z_px - [x, y]).T)) > 8:
                        candidates.append(((x, y), near.min(axis=0), near.max(axis=0)))
        assert len(candidates) >= 3
        candidates = candidates[:: max(1, len(candidates) // 12)]
        points = [p for p, _, _ in candidates]
        plain = _pixels(driver, "scatter", points)[:, :3]  # white, or an axis line
        driver.find_element("id", "manifold-toggle").click()
        WebDriverWait(driver, 10).until(lambda d: (_pixels(d, "scatter", points)[:, :3] != plain).any())  # decoded
        shown = _pixels(driver, "scatter", points)[:, :3]
        lo = 0.55 * plain + 0.45 * np.array([v for _, v, _ in candidates])  # each cell's own decoded pixels
        hi = 0.55 * plain + 0.45 * np.array([v for _, _, v in candidates])  # over the plane, at 45 % opacity
        assert ((lo - 2 <= shown) & (shown <= hi + 2)).all(), (shown, lo, hi)
        driver.find_element("id", "manifold-toggle").click()
        assert driver.execute_script("return document.getElementById('scatter').toDataURL()") == without_trails
    else:
        assert not label.is_displayed()
    driver.find_element("id", "trails-toggle").click()

    # hovering an isolated point (no other within the hover radius) shows that point's input and reconstruction
    assert _ink(driver, "hover-input") == 0 and _ink(driver, "hover-recon") == 0
    px = np.array([list(driver.execute_script(api + "pointToPixel(arguments[0])", i).values())
                   for i in range(len(probe["labels"]))])
    distance = np.hypot(*(px[:, None, :] - px[None, :, :]).transpose(2, 0, 1)) + np.eye(len(px)) * 1e9
    inside = (px[:, 0] > 70) & (px[:, 0] < 530) & (px[:, 1] > 30) & (px[:, 1] < 500)
    target = int(np.argmax(np.where(inside, distance.min(axis=1), -1)))
    assert distance[target].min() > 2 * 7  # no other point within the radius of the target
    _mouse_to(driver, px[target, 0] + 2, px[target, 1] - 1)
    assert driver.execute_script(api + "hovered") == target
    info = driver.find_element("id", "hover-info").text
    label_name = str(probe["class_names"][probe["labels"][target]]) if "class_names" in probe else ""
    assert f"probe point {target} (test example {int(probe['index'][target])}), class {int(probe['labels'][target])}" in info
    assert label_name in info and f"loss {float(snaps[0]['loss'][target]):.4g}" in info
    if image:
        _wait_for_ink(driver, "hover-input")
        _wait_for_ink(driver, "hover-recon")
        np.testing.assert_array_equal(_shown_image(driver, "hover-input", probe["x"].shape[1:]),
                                      _as_uint8(probe["x"][target]))
        recon = _shown_image(driver, "hover-recon", probe["x"].shape[1:])
        assert np.abs(recon - _as_uint8(snaps[0]["recon"][target])).max() <= 1  # float16 rounding
    else:  # vectors: the numbers, written out
        shown = re.search(r"input \(([^)]*)\) → reconstruction \(([^)]*)\)", info)
        np.testing.assert_allclose([float(v) for v in shown.group(1).split(",")], probe["x"][target], rtol=5e-3)
        np.testing.assert_allclose([float(v) for v in shown.group(2).split(",")],  # 3 significant digits
                                   snaps[0]["recon"][target].astype(np.float32), rtol=5e-3)

    # clicking in the plane decodes there (2-D codes): the grid cell nearest the click, as numpy finds it
    decoded_info = driver.find_element("id", "decoded-info")
    if k == 2:
        assert _ink(driver, "decoded-click") == 0
        _mouse_to(driver, 300, 200, click=True)
        clicked = driver.execute_script(api + "clicked")
        assert clicked is not None
        at = driver.execute_script(api + "dataToPixel(arguments[0], arguments[1])", *clicked)
        assert abs(at["x"] - 300) <= 1 and abs(at["y"] - 200) <= 1
        g1, g2 = snaps[0]["grid_z1"], snaps[0]["grid_z2"]
        j, i = int(np.argmin(np.abs(g1 - clicked[0]))), int(np.argmin(np.abs(g2 - clicked[1])))
        cell = snaps[0]["grid_decoded"][i * len(g1) + j].astype(np.float32)
        assert f"nearest point ({float(g1[j]):.4g}, {float(g2[i]):.4g})" in decoded_info.text
        if image:
            _wait_for_ink(driver, "decoded-click")
            assert np.abs(_shown_image(driver, "decoded-click", cell.shape) - _as_uint8(cell)).max() <= 1
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

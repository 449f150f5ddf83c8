"""Shared by the explorer tests: a fake run directory and a real headless Chromium with helpers."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

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


@pytest.fixture(scope="module")
def browser():  # imported by the test modules as their fixture
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


def open_page(driver, page: Path):
    driver.get(page.resolve().as_uri())
    driver.execute_script("return document.readyState")  # get() returns once the page has loaded
    severe = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert not severe, severe
    return driver


def ink(driver, element_id: str) -> int:
    """How many pixels of a canvas are drawn (not transparent)."""
    return driver.execute_script(
        "const c = document.getElementById(arguments[0]);"
        "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n;", element_id)


def wait_for_ink(driver, element_id: str) -> int:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 10).until(lambda d: ink(d, element_id) > 0)  # atlases decode asynchronously
    return ink(driver, element_id)


def mouse_to(driver, x: float, y: float, click: bool = False, element_id: str = "scatter"):
    """Move the real mouse to (x, y) CSS pixels from a canvas' top left (the scatter's by default)."""
    from selenium.webdriver.common.action_chains import ActionChains

    canvas = driver.find_element("id", element_id)
    size = canvas.size  # W3C offsets count from the element's centre
    chain = ActionChains(driver).move_to_element_with_offset(canvas, round(x - size["width"] / 2),
                                                             round(y - size["height"] / 2))
    (chain.click() if click else chain).perform()


def set_slider(driver, value: int):
    driver.execute_script("const s = document.getElementById('snapshot-slider'); s.value = arguments[0];"
                          "s.dispatchEvent(new Event('input', {bubbles: true}));", str(value))


def pixels(driver, element_id: str, points) -> np.ndarray:
    """The RGBA values of a canvas at ``points`` (canvas pixel coordinates, rounded down)."""
    return np.array(driver.execute_script(
        "const c = document.getElementById(arguments[0]).getContext('2d');"
        "return arguments[1].map(([x, y]) => Array.from(c.getImageData(Math.floor(x), Math.floor(y), 1, 1).data));",
        element_id, [[float(x), float(y)] for x, y in points]), dtype=float)


BOX = 140  # the example canvases of the page (CSS pixels; the browser runs at scale factor 1)


def shown_image(driver, element_id: str, shape: tuple[int, ...]) -> np.ndarray:
    """The image an example canvas shows, read back at the centre of each source pixel: ``shape``."""
    h, w = shape[:2]
    scale = min(BOX / w, BOX / h)
    x0, y0 = (BOX - w * scale) / 2, (BOX - h * scale) / 2
    points = [(x0 + (c + 0.5) * scale, y0 + (r + 0.5) * scale) for r in range(h) for c in range(w)]
    rgba = pixels(driver, element_id, points).reshape(h, w, 4)
    assert (rgba[..., 3] == 255).all()  # drawn everywhere
    return rgba[..., 0] if len(shape) == 2 or shape[2] == 1 else rgba[..., :3]


def as_uint8(x: np.ndarray) -> np.ndarray:
    """How the page encodes an image in [0, 1]: 255 * x, rounded (``explorer._to_uint8``)."""
    y = np.round(np.clip(np.asarray(x, np.float32), 0, 1) * 255)
    return y[..., 0] if y.shape[-1] == 1 else y



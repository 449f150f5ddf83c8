"""Screenshots of the explorer page for docs/img/, taken in headless Chromium at 1280x800.

    python scripts/explorer_screenshots.py RUN_DIR OUT.png [--hover I] [--click Z1 Z2] [--grid]

Writes the run's page (aejax-explore), opens it at 1280x800, hovers probe point I (default: the
first) and clicks the code (X, Y), as a reader would with the mouse,
and saves the screenshot. Needs Debian's chromium and chromium-driver and selenium.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from aejax.analysis.explorer import write_explorer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--hover", type=int, default=0, help="probe point to hover")
    parser.add_argument("--grid", action="store_true", help="show the decoded grid instead of the points")
    parser.add_argument("--click", type=float, nargs=2, metavar=("Z1", "Z2"), help="a code to decode")
    args = parser.parse_args()

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,800",
                "--force-device-scale-factor=1"):
        options.add_argument(arg)
    options.binary_location = "/usr/bin/chromium"
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
        page = write_explorer(args.run_dir, Path(tempfile.mkdtemp()) / "explorer.html")
        driver.get(page.resolve().as_uri())
        chrome = driver.execute_script("return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight]")
        driver.set_window_size(1280 + chrome[0], 800 + chrome[1])  # the page's viewport: 1280x800
        time.sleep(1)  # the image atlases decode
        scatter = driver.find_element("id", "scatter")
        size = scatter.size

        def mouse(x, y, click=False):
            chain = ActionChains(driver).move_to_element_with_offset(scatter, round(x - size["width"] / 2),
                                                                     round(y - size["height"] / 2))
            (chain.click() if click else chain).perform()

        if args.grid:
            driver.find_element("id", "manifold-toggle").click()
        if args.click:
            mouse(*driver.execute_script("const p = window.aejaxExplorer.dataToPixel(arguments[0], arguments[1]);"
                                         "return [p.x, p.y]", *args.click), click=True)
        mouse(*driver.execute_script("const p = window.aejaxExplorer.pointToPixel(arguments[0]); return [p.x, p.y]",
                                     args.hover))
        time.sleep(0.5)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(args.out))
        print(f"wrote {args.out}")
    finally:
        driver.quit()


if __name__ == "__main__":
    main()

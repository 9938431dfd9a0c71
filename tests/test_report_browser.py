"""The HTML reports opened in a real headless browser: nothing fetched, plots drawn.

Debian's ``chromium`` and ``chromium-driver`` (which ``.ci/run`` installs),
driven by selenium. Without them the test skips, except under ``CI=true``,
where it fails: CI must not pass by not looking.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from recsim_cli.cli import app

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WIDTH = 1200
MIN_INK = 0.02  # share of the screenshot's pixels that must differ from the background
REPO = Path(__file__).resolve().parent.parent


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must run the browser test (.ci/run installs it)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        _unavailable(f"no headless browser: {', '.join(missing)} missing")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable("selenium is not installed (pip install -e '.[dev]')")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"):
        options.add_argument(argument)
    options.add_argument(f"--window-size={WIDTH},900")
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    browser = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield browser
    finally:
        browser.quit()


def _run(*args: object) -> int:
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code


@pytest.fixture(scope="module")
def evaluate_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from test_report_evaluate import METRICS, write_world  # tests/ is on sys.path under pytest

    root = tmp_path_factory.mktemp("browser-evaluate")
    data, files = write_world(root)
    page = root / "evaluate.html"
    recs = [arg for path in files for arg in ("--recs", path)]
    code = _run(
        "evaluate", "--data", data, *recs, "--k", "3,5", "--metrics", METRICS, "--by", "device",
        "--html", page,
    )  # fmt: skip
    assert code == 0
    return page


@pytest.fixture(scope="module")
def abtest_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from recsim_cli.ingest import ingest
    from recsim_cli.simulate import WorldConfig, arms_from_names, run_simulation

    root = tmp_path_factory.mktemp("browser-abtest")
    arms = arms_from_names(["prod", "personal"])
    run_simulation(WorldConfig(users=600, items=300, days=4, seed=4, arms=arms), root / "logs")
    ingest(root / "logs" / "events.csv.gz", data=root / "data")
    page = root / "abtest.html"
    code = _run(
        "abtest", "--data", root / "data", "--arm-column", "policy", "--control", "prod",
        "--treatment", "personal", "--gate", REPO / "examples" / "gate.toml", "--html", page,
    )  # fmt: skip
    assert code in (0, 1, 3, 4)
    return page


def _requests(browser: Any) -> list[str]:
    """The URLs the page asked for since the log was last read."""
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def _ink(png: bytes) -> float:
    """The share of pixels that differ from the most common colour (the background)."""
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).reshape(-1, 3).astype(np.int32)
    packed = (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]
    values, counts = np.unique(packed, return_counts=True)
    background = rgb[np.flatnonzero(packed == values[counts.argmax()])[0]]
    return float((np.abs(rgb - background).sum(axis=1) > 24).mean())


@pytest.mark.parametrize("which", ["evaluate_page", "abtest_page"])
def test_the_page_loads_nothing_and_draws_its_plots(
    driver: Any, which: str, request: pytest.FixtureRequest
) -> None:
    from selenium.webdriver.common.by import By

    page: Path = request.getfixturevalue(which)
    _requests(driver)  # forget what earlier pages asked for
    url = page.as_uri()
    driver.get(url)
    assert driver.execute_script("return document.readyState") == "complete"
    requests = _requests(driver)
    assert url in requests
    assert [u for u in requests if u != url and not u.startswith("data:")] == []
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []

    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(WIDTH, min(height, 8000))
    assert _ink(driver.get_screenshot_as_png()) >= MIN_INK

    plots = driver.find_elements(By.CSS_SELECTOR, "figure svg")
    assert plots
    for plot in plots:
        size = plot.size
        assert size["width"] > 200 and size["height"] > 50
        assert _ink(plot.screenshot_as_png) >= MIN_INK

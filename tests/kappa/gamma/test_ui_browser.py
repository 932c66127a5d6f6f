"""The registry's web UI in a real browser: Debian's headless Chromium driven by selenium,
with JavaScript turned off (the UI must work without it), against a real server process.

Screenshots of every page land in out/test-artifacts/gamma-ui/.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.server
ROOT = Path(__file__).resolve().parents[3]
SHOTS = ROOT / "out" / "test-artifacts" / "gamma-ui"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert Path(CHROMEDRIVER).exists() and shutil.which("chromium"), (
        "Chromium and its driver are missing: `make test` installs them "
        "(apt-get install chromium chromium-driver)"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
        "--window-size=1280,1000", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):  # fmt: skip
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def registry(tmp_path_factory, iris):
    """A registry holding two labelled versions of IrisClassifier and one scoring run."""
    from tests.conftest import IRIS_SERVICE
    from tests.servers import gamma_server

    service = IRIS_SERVICE.replace(
        "DataframeInput()", 'DataframeInput(columns=["a", "b", "c", "d"], dtype="float64")'
    )
    assert service != IRIS_SERVICE

    work = tmp_path_factory.mktemp("ui-data")
    (work / "ui_iris_service.py").write_text(service)
    script = f"""
import sys
sys.path.insert(0, {str(work)!r})
import pickle
from ui_iris_service import IrisClassifier
model = pickle.loads({__import__("pickle").dumps(iris[2])!r})
IrisClassifier().pack("model", model, metadata={{"accuracy": 0.97}}).save(labels={{"stage": "qa"}})
newest = IrisClassifier().pack("model", model, metadata={{"accuracy": 0.98}})
newest.save(labels={{"stage": "prod", "team": "risk"}})
"""
    frame = pd.DataFrame(iris[0][:30], columns=["a", "b", "c", "d"])
    frame.to_parquet(work / "in.parquet")
    with gamma_server(tmp_path_factory.mktemp("ui-gamma")) as server:
        env = {**server.env, **server.client_env("write"), "KAPPA_HOME": str(work / "client")}
        subprocess.run([sys.executable, "-c", script], env=env, check=True, cwd=ROOT)
        kappa = str(Path(sys.executable).parent / "kappa")
        run = [kappa, "run", "IrisClassifier:latest", "predict", "--input-file", str(work / "in.parquet"),
               "--output-file", str(work / "out.parquet"), "--no-progress"]  # fmt: skip
        subprocess.run(run, env=env, check=True, capture_output=True)
        yield server


def _shot(driver, name: str) -> None:
    assert driver.save_screenshot(str(SHOTS / f"{name}.png"))


def test_pages_filter_links_and_keyboard(browser, registry):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver = browser
    driver.get(registry.url + "/ui")
    # no token yet: the page asks for one, in a form
    assert "Sign in with a token" in driver.find_element(By.TAG_NAME, "h1").text
    _shot(driver, "01-login")
    driver.find_element(By.ID, "token").send_keys(registry.tokens["read"], Keys.ENTER)
    assert driver.find_element(By.TAG_NAME, "h1").text == "Services"
    body = driver.find_element(By.TAG_NAME, "main").text
    assert "2 version(s) of 1 service(s)" in body and "IrisClassifier" in body
    _shot(driver, "02-services")

    # keyboard: the first Tab reaches the skip link, and Enter in the selector field filters
    driver.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    assert driver.switch_to.active_element.text == "Skip to content"
    selector = driver.find_element(By.ID, "labels")
    selector.send_keys("stage In (prod), team=risk", Keys.ENTER)
    assert "1 version(s) of 1 service(s) match" in driver.find_element(By.TAG_NAME, "main").text
    assert "team=risk" in driver.find_element(By.TAG_NAME, "table").text
    _shot(driver, "03-filtered")
    driver.find_element(By.ID, "labels").clear()
    driver.find_element(By.ID, "labels").send_keys("stage In (prod", Keys.ENTER)
    assert "selector" in driver.find_element(By.CSS_SELECTOR, "[role=alert]").text.lower()
    _shot(driver, "04-bad-selector")

    # the service page, then the newest version's page through its link
    driver.get(registry.url + "/ui")
    driver.find_element(By.LINK_TEXT, "IrisClassifier").click()
    assert driver.find_element(By.TAG_NAME, "h1").text == "IrisClassifier"
    _shot(driver, "05-service")
    versions = driver.find_elements(By.CSS_SELECTOR, "tbody tr td:first-child a")
    assert len(versions) == 2
    versions[0].click()
    page = driver.find_element(By.TAG_NAME, "main").text
    assert "Not declared" not in page.split("Output schema")[0]  # the declared input columns are shown
    expected = ["APIs", "Input schema", "double", "Artifacts", "SklearnModelArtifact", "accuracy", "0.98"]
    expected += ["Pinned pip packages", "kappa-engine", "Scoring runs with this version"]
    assert [e for e in expected if e not in page] == []
    download = driver.find_element(By.PARTIAL_LINK_TEXT, "Download this bundle")
    assert download.get_attribute("href").endswith("/archive")
    _shot(driver, "06-version")

    # the runs page links each run to its version
    driver.find_element(By.LINK_TEXT, "Runs").click()
    runs = driver.find_element(By.TAG_NAME, "table").text
    assert "succeeded" in runs and "30" in runs and "0.00%" in runs
    _shot(driver, "07-runs")
    driver.find_element(By.CSS_SELECTOR, "tbody tr td:nth-child(3) a").click()
    assert driver.find_element(By.TAG_NAME, "h1").text.startswith("IrisClassifier:")
    driver.back()
    driver.find_element(By.CSS_SELECTOR, "tbody tr td:first-child a").click()
    assert driver.find_element(By.TAG_NAME, "h1").text.startswith("Run run-")
    _shot(driver, "08-run")

"""The status page in a real browser: headless Chromium (Debian's package, driven by Selenium
through Debian's chromedriver) reads the pages of a daemon that reconciles the example on the
platform. Screenshots of the three pages are kept in build/screenshots/ (`make screenshots`
copies the application page into docs/ for the README)."""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from kubernetes import client

from tests.helpers import ROOT, example_data
from tests.integration.conftest import SECRET, ConfigRepo, Daemon, Platform
from tests.integration.test_platform import eventually

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402 - after the skip

SCREENSHOTS = ROOT / "build" / "screenshots"
REALWORLD = "realworld"
BACKEND = "spring-boot-realworld-example-app"


def _browser_paths() -> tuple[str, str] | None:
    chromium = os.environ.get("MICO_CHROMIUM") or shutil.which("chromium")
    driver = os.environ.get("MICO_CHROMEDRIVER") or shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    paths = _browser_paths()
    if paths is None:
        pytest.skip("no Chromium: install Debian's chromium and chromium-driver (`make browser`)")
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=paths[1]))
    driver.set_window_size(1280, 900)
    yield driver
    driver.quit()


@pytest.fixture
def daemon(start_daemon: Callable[..., Daemon], config_repo: ConfigRepo) -> Daemon:
    config_repo.push(example_data(), "MICO's tutorial applications")
    daemon = start_daemon()
    eventually(
        lambda: {a["deployment"] for a in applications(daemon)} == {"Deployed"},
        timeout=90,
        what="both applications Deployed",
    )
    return daemon


def applications(daemon: Daemon) -> list[dict[str, Any]]:
    return json.loads(daemon.get("/api/applications")[1])


def visit(browser: Any, url: str) -> None:
    """Load a page; it must say nothing in the console (a blocked resource, a script error)."""
    browser.get(url)
    assert browser.find_elements(By.TAG_NAME, "main"), f"{url}: not a page"
    errors = [entry for entry in browser.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")]
    assert not errors, f"{url}: {errors}"


def screenshot(browser: Any, name: str) -> None:
    """The whole page, not only what the window shows."""
    height = browser.execute_script("return document.documentElement.scrollHeight")
    width = browser.execute_script("return document.documentElement.clientWidth")
    shot = browser.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
        },
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    picture = base64.b64decode(shot["data"])
    assert picture.startswith(b"\x89PNG"), name
    assert len(picture) > 10_000, f"{name}: {len(picture)} bytes"
    (SCREENSHOTS / f"{name}.png").write_bytes(picture)


def cells(browser: Any, row: Any) -> dict[str, str]:
    return {td.get_attribute("data-label"): td.text for td in row.find_elements(By.TAG_NAME, "td")}


def test_the_pages_show_what_the_api_says_and_every_link_works(browser: Any, daemon: Daemon) -> None:
    visit(browser, daemon.url + "/")
    assert not browser.find_elements(By.TAG_NAME, "script"), "the pages work without JavaScript"
    api = {a["app"]: a for a in applications(daemon)}
    rows = browser.find_elements(By.CSS_SELECTOR, "table.apps tbody tr")
    assert len(rows) == len(api) == 2
    for row in rows:
        name = row.find_element(By.CSS_SELECTOR, "th a").text
        shown = cells(browser, row)
        assert shown["Version"] == api[name]["version"]
        assert shown["Deployment"].split()[-1] == api[name]["deployment"]  # a sign, then the word
        assert shown["Sync"].split()[-1] == api[name]["sync"]
        assert shown["Applied revision"].startswith(api[name]["revision"][:8])
    screenshot(browser, "applications")

    links = {a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "a[href]")}
    visit(browser, f"{daemon.url}/applications/{REALWORLD}/v1.0.0")
    assert browser.find_elements(By.CSS_SELECTOR, "figure.graph svg")
    assert BACKEND in browser.find_element(By.ID, "instances").find_element(By.XPATH, "..").text
    screenshot(browser, "application")
    links |= {a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "a[href]")}
    visit(browser, f"{daemon.url}/history")
    screenshot(browser, "history")
    links |= {a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "a[href]")}

    own = sorted(link for link in links if link.startswith(daemon.url))
    assert len(own) >= 6
    for link in own:
        status, _ = daemon.get(link.removeprefix(daemon.url))
        assert status == 200, link
        if urlsplit(link).path.startswith(("/applications/", "/history")) or urlsplit(link).path == "/":
            visit(browser, link)

    browser.find_element(By.ID, "app").send_keys(REALWORLD)
    browser.find_element(By.CSS_SELECTOR, "form.filter button").click()
    assert browser.find_element(By.TAG_NAME, "h1").text == f"History of {REALWORLD}"


def test_a_drift_made_with_kubectl_shows_after_a_refresh(
    browser: Any, daemon: Daemon, platform: Platform, kube: client.ApiClient, namespace: str
) -> None:
    page = f"{daemon.url}/applications/{REALWORLD}/v1.0.0"
    visit(browser, page)
    assert "No drift found." in browser.find_element(By.ID, "latest").find_element(By.XPATH, "..").text
    scaled = platform.kubectl(
        "-n", namespace, "scale", "deployment", "-l", f"ust.mico/name={BACKEND}", "--replicas=7"
    )
    assert scaled.returncode == 0, scaled.stderr
    assert daemon.post("/webhook/generic", b"", {"Authorization": f"Bearer {SECRET.decode()}"}) == 202

    def reverted() -> bool:
        latest = json.loads(daemon.get(f"/api/history?limit=1&app={REALWORLD}")[1])
        return any(a["drift"] and BACKEND in a["name"] for a in latest[0]["actions"])

    eventually(reverted, timeout=30, what="a run that reverts the drift")
    browser.refresh()
    latest = browser.find_element(By.ID, "latest").find_element(By.XPATH, "..").text
    assert "Drift: 1 object had been changed in the cluster." in latest
    drifted = [
        row
        for row in browser.find_elements(By.CSS_SELECTOR, "#latest ~ div table tbody tr")
        if cells(browser, row)["Drift"] == "drift"
    ]
    assert len(drifted) == 1
    assert BACKEND in cells(browser, drifted[0])["Object"]


def test_readable_at_320_pixels(browser: Any, daemon: Daemon) -> None:
    browser.set_window_size(320, 800)
    try:
        for path in ("/", f"/applications/{REALWORLD}/v1.0.0", "/history"):
            visit(browser, daemon.url + path)
            inner, scrolled = browser.execute_script(
                "return [window.innerWidth, document.documentElement.scrollWidth]"
            )
            assert scrolled <= inner, f"{path}: {scrolled} px wide in a {inner} px window"
            status = browser.find_elements(By.CSS_SELECTOR, ".badge")
            assert status
            assert all(badge.is_displayed() for badge in status[:4])
    finally:
        browser.set_window_size(1280, 900)

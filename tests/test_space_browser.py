"""The Space in a real browser: headless Debian Chromium through Playwright (never ``playwright install``).

Types a query, clicks Search, waits for both result lists and checks the top documents against
era_hf computed directly. Saves a screenshot in the test's tmp dir; with
``ERA_HF_UPDATE_SCREENSHOT=1`` it also replaces ``docs/images/space.png`` (the README's image).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from test_space import KNOWN_QUERY, KNOWN_TOP, K, direct_search, get_space

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--no-first-run",
                 "--disable-sync", "--disable-quic"]
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "images" / "space.png"
TIMEOUT_MS = 60_000

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason=f"{CHROMIUM} is missing (install Debian's chromium: `make browser`)")

# Both lists filled and nothing pending any more.
RESULTS_READY = """([k]) => document.querySelectorAll('.pending').length === 0
    && document.querySelectorAll('#era-results li.era-hit').length === k
    && document.querySelectorAll('#baseline-results li.era-hit').length === k"""


@pytest.fixture(scope="module")
def page(request: pytest.FixtureRequest):
    sync_api = pytest.importorskip("playwright.sync_api")
    space = get_space(request)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
        pg = context.new_page()
        pg.set_default_timeout(TIMEOUT_MS)
        pg.goto(space["url"], wait_until="domcontentloaded")
        pg.wait_for_selector("#query textarea")
        yield pg
        context.close()
        browser.close()


def set_top_k(page, k: int) -> None:
    box = page.locator("#top-k input[type='number']")
    box.fill(str(k))
    box.press("Enter")
    page.wait_for_function("([k]) => document.querySelector('#top-k input[type=range]').value === String(k)", arg=[k])


def test_search_in_the_browser_shows_both_rankings(page, request, tmp_path):
    space = get_space(request)
    service = space["service"]
    expected = direct_search(service, KNOWN_QUERY, service.instruction, K)
    assert expected["era"][0][0] == KNOWN_TOP

    assert page.locator("#instruction textarea").input_value() == service.instruction  # prefilled
    set_top_k(page, K)
    page.locator("#query textarea").fill(KNOWN_QUERY)
    page.locator("#search-button").click()
    page.wait_for_function(RESULTS_READY, arg=[K])

    for side in ("era", "baseline"):
        ids = page.locator(f"#{side}-results li.era-hit").evaluate_all("els => els.map(e => e.dataset.docId)")
        assert ids == expected[side][0], side
        assert "ms" in page.locator(f"#{side}-results .era-latency").inner_text()
    assert page.locator("#era-results li.era-hit .era-title").first.inner_text().startswith("computerized search")
    assert "ERA" in page.locator("#status").inner_text()

    shot = tmp_path / "space.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("ERA_HF_UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)


def test_empty_query_shows_a_message_and_the_page_keeps_working(page):
    page.locator("#query textarea").fill("   ")
    page.locator("#search-button").click()
    page.wait_for_function("() => document.querySelector('#status').innerText.includes('enter a query')")
    assert page.locator("#era-results li.era-hit").count() == 0

    page.locator(".gallery button, [data-testid='examples'] button, .examples button").first.click()
    # the example fills the query box (asynchronously)
    page.wait_for_function("() => document.querySelector('#query textarea').value.trim().length > 0")
    page.locator("#search-button").click()
    page.wait_for_function(RESULTS_READY, arg=[K])

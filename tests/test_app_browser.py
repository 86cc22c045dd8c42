"""The demo in a real browser: headless Chromium (Debian's chromium + chromium-driver) drives the
app on localhost over the offline `sample` profile: it uploads a freshly rendered photo of a flag
(one the retriever never saw), asks for the capital, and checks the answer, the evidence and its
layout (thumbnails beside whole passages, the prompt's passages marked), then that an error
replaces both. Screenshots: test-artifacts/demo.png and demo-error.png."""

import shutil
from pathlib import Path

import pytest

from rag_vqa.flag_photos import FRESH, render_photo
from tests.test_app_process import demo_process

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
COUNTRY, SEED, CAPITAL = "italy", 9001, "Rome"   # a photo no training run rendered


@pytest.fixture()
def browser(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("Debian packages chromium and chromium-driver are not installed")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1280,1000",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()


@pytest.fixture()
def app_url(tmp_path):
    with demo_process(tmp_path, profile="sample", timeout=600) as run:
        yield run.url + "/"


LAYOUT = """
const items = [...document.querySelectorAll('#evidence .evidence-item')];
return items.map(item => {
  const img = item.querySelector('img'), text = item.querySelector('.evidence-text');
  const i = img ? img.getBoundingClientRect() : null, t = text.getBoundingClientRect();
  return {img: i ? [i.left, i.top, i.width, i.height] : null, text: [t.left, t.top, t.width],
          clipped: text.scrollHeight > text.clientHeight + 1 || text.scrollWidth >
                   text.clientWidth + 1, loaded: img ? img.complete && img.naturalWidth > 0 :
                   false};
});
"""


def test_ask_about_a_fresh_flag_photo_in_the_browser(browser, app_url, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    photo = tmp_path / "my-flag-photo.jpg"
    render_photo(COUNTRY, SEED, FRESH).save(photo, quality=90)
    wait = WebDriverWait(browser, 180)
    browser.get(app_url)
    banner = wait.until(ec.presence_of_element_located((By.ID, "models")))
    assert "ReT trained on the 30-flag sample" in banner.text and "UNTRAINED" not in banner.text
    upload = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR,
                                                        "#photo input[type=file]")))
    upload.send_keys(str(photo))
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#photo img")))
    browser.find_element(By.CSS_SELECTOR, "#question textarea").send_keys(
        "What is the capital of this country?")
    browser.find_element(By.CSS_SELECTOR, "#ask").click()

    answer = wait.until(lambda d: d.find_element(By.ID, "answer")
                        if "generation" in d.find_element(By.ID, "answer").text else False)
    answered = answer.text
    assert "SmolLM2-135M (text only)" in answered and "UNTRAINED" not in answered
    items = browser.find_elements(By.CSS_SELECTOR, "#evidence .evidence-item")
    first_item = items[0].text
    assert len(items) == 5 and "#1" in first_item and "in the prompt" in first_item
    assert all("score" in item.text for item in items)
    wait.until(lambda d: all(box["loaded"] for box in d.execute_script(LAYOUT)))
    for box in browser.execute_script(LAYOUT):
        left, top, width, _ = box["img"]
        assert width <= 160, box                     # a thumbnail, not the page's width
        assert box["text"][0] >= left + width, box   # beside its passage, not above it
        assert abs(box["text"][1] - top) < 60, box
        assert not box["clipped"], box               # the whole passage is readable
    ARTIFACTS.mkdir(exist_ok=True)
    browser.execute_script("document.getElementById('evidence').scrollIntoView();")
    browser.save_screenshot(str(ARTIFACTS / "demo-evidence.png"))
    browser.execute_script("window.scrollTo(0, 0);")
    browser.save_screenshot(str(ARTIFACTS / "demo.png"))
    assert (ARTIFACTS / "demo.png").stat().st_size > 10_000

    # an error replaces the answer and the evidence: nothing stale stays on screen
    box = browser.find_element(By.CSS_SELECTOR, "#question textarea")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.BACKSPACE)  # as a person would (clear() bypasses the page's events)
    browser.find_element(By.CSS_SELECTOR, "#ask").click()
    error = wait.until(lambda d: d.find_element(By.ID, "answer")
                       if "Error" in d.find_element(By.ID, "answer").text else False)
    assert "type a question" in error.text and CAPITAL not in error.text
    wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, "#evidence .evidence-item"))
    browser.save_screenshot(str(ARTIFACTS / "demo-error.png"))

    # last, so that the layout above is always checked and photographed
    assert "Italy" in first_item, first_item      # the right country's facts passage first
    assert CAPITAL in answered.splitlines()[0], answered
    assert "Rome" in first_item

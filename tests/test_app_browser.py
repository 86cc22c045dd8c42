"""The demo in a real browser: headless Chromium (Debian's chromium + chromium-driver) drives the
app on localhost, uploads a sample photo, asks, and checks that the answer and the evidence
appear, then that an error replaces both. Screenshots are saved to test-artifacts/demo.png and
demo-error.png."""

import shutil
from pathlib import Path

import pytest

from rag_vqa.samples import FLAGS, question_image, sample_questions
from tests.test_app_process import demo_process

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"


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
                 "--disable-component-update", "--disable-sync", "--window-size=1280,1600",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()


@pytest.fixture()
def app_url(tmp_path):
    with demo_process(tmp_path) as run:
        yield run.url + "/"


def test_ask_about_a_sample_photo_in_the_browser(browser, app_url):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 120)
    browser.get(app_url)
    sample = sample_questions()[0]
    upload = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR,
                                                        "#photo input[type=file]")))
    upload.send_keys(str(question_image(sample)))
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#photo img")))
    browser.find_element(By.CSS_SELECTOR, "#question textarea").send_keys(sample.question)
    browser.find_element(By.CSS_SELECTOR, "#ask").click()

    titles = {name.title() for name in FLAGS}
    table = wait.until(lambda d: d.find_element(By.ID, "evidence-table")
                       if any(t in d.find_element(By.ID, "evidence-table").text for t in titles)
                       else False)
    answer = wait.until(lambda d: d.find_element(By.ID, "answer")
                        if "meaningless" in d.find_element(By.ID, "answer").text else False)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#evidence img")) >= 1)
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "demo.png"))
    assert "UNTRAINED" in answer.text
    assert sum(t in table.text for t in titles) >= 1
    assert (ARTIFACTS / "demo.png").stat().st_size > 10_000

    # an error replaces the answer and the evidence: nothing stale stays on screen
    box = browser.find_element(By.CSS_SELECTOR, "#question textarea")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.BACKSPACE)  # as a person would (clear() bypasses the page's events)
    browser.find_element(By.CSS_SELECTOR, "#ask").click()
    error = wait.until(lambda d: d.find_element(By.ID, "answer")
                       if "Error" in d.find_element(By.ID, "answer").text else False)
    assert "type a question" in error.text and "UNTRAINED" not in error.text
    wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, "#evidence img"))
    assert not any(t in browser.find_element(By.ID, "evidence-table").text for t in titles)
    browser.save_screenshot(str(ARTIFACTS / "demo-error.png"))

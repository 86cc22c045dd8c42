"""The demo in a real browser: headless Chromium (Debian's chromium + chromium-driver) drives the
app on localhost, uploads a sample photo, asks, and checks that the answer and the evidence
appear. A screenshot is saved to test-artifacts/demo.png."""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rag_vqa.samples import FLAGS, question_image, sample_questions

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 180) -> None:
    """Until the app accepts connections on the loopback port it was given."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the app exited early:\n{proc.stdout.read()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"the app did not listen on port {port}")


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
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "app.py", "--sample", "--profile", "tiny",
                             "--port", str(port)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_listening(port, proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_ask_about_a_sample_photo_in_the_browser(browser, app_url):
    from selenium.webdriver.common.by import By
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

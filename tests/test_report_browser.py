"""The HTML report as a user reads it: `snakemake --report` opened in a real headless Chromium.

Snakemake's report.html is a single-page (React) app: nothing is in the page until its scripts
have run, and each result opens only when clicked. So the test clicks through it: the categories
in reading order, the findings opened from "1. Findings" and read inside the page, and every figure
the findings show listed under some category, the signal figures under "3. Diagnostics".
Chromium and chromedriver are Debian's (tests/browser/install-chromium.sh installs them).
"""

from __future__ import annotations

import html
import os
import re
import subprocess
from pathlib import Path

import markdown
import pytest
from conftest import REPO

INSTALL_SCRIPT = REPO / "tests" / "browser" / "install-chromium.sh"
# install-chromium.sh's exit status when this machine cannot have the browser (not root, no apt).
UNSUPPORTED = 3
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
WAIT_SECONDS = 30
# Their names sort into reading order: the report's menu lists categories sorted by name.
CATEGORIES = ["1. Findings", "2. Figures", "3. Diagnostics", "4. Learning-rate sweep", "6. Tables"]
SIGNAL_FIGURES = ["signal_at_init.png", "signal_grad_norms.png"]


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads):
    """Headless Chromium driven by selenium through Debian's chromedriver; downloads go to `downloads`."""
    installed = subprocess.run([str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=900)
    if installed.returncode == UNSUPPORTED:
        reason = f"no headless Chromium on this machine: {installed.stdout.strip().splitlines()[-1]}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: the report test must run in CI)")
        pytest.skip(reason)
    assert installed.returncode == 0, f"install-chromium.sh failed:\n{installed.stdout}\n{installed.stderr}"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # --no-sandbox: Chromium refuses to run as root with its sandbox, and tests run as root in CI.
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


def visible_text(element) -> str:
    return " ".join(element.text.split())


def headline(findings: str) -> tuple[str, str]:
    """The findings' title and its first paragraph, as text a reader sees."""
    body = markdown.markdown(findings, extensions=["tables"])
    strip = lambda fragment: " ".join(html.unescape(re.sub(r"<[^>]+>", "", fragment)).split())  # noqa: E731
    title = re.search(r"<h1>(.*?)</h1>", body, re.S).group(1)
    after_title = body.split("</h1>", 1)[1]
    paragraph = re.search(r"<p>(.*?)</p>", after_title, re.S).group(1)
    return strip(title), strip(paragraph)


def shown_figures(findings: str) -> list[str]:
    """The file names of the images findings.md shows."""
    return [Path(path).name for path in re.findall(r"!\[[^\]]*\]\(([^)\s]+)", findings)]


def linked_files(findings: str) -> list[str]:
    """The relative paths of the files findings.md links (not images, web pages or anchors)."""
    links = re.findall(r"(?<!!)\[[^\]]*\]\(([^)\s]+)", findings)
    return [link for link in links if not re.match(r"[a-z]+:|#", link)]


def test_the_findings_read_inside_the_html_report_and_every_figure_is_listed(
    finished_sweep_study, browser, downloads, tmp_path
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as shown
    from selenium.webdriver.support.ui import WebDriverWait

    # the smallest study with every category (conftest.SWEEP_STUDY), run as `make report` runs one: the
    # study, then the report
    results = finished_sweep_study.results
    findings = (results / "findings.md").read_text()
    wait = WebDriverWait(browser, WAIT_SECONDS)

    def open_category(name):
        wait.until(shown.element_to_be_clickable((By.LINK_TEXT, name))).click()
        wait.until(shown.presence_of_element_located((By.XPATH, "//td[contains(., 'results/')]")))
        return [visible_text(cell) for cell in browser.find_elements(By.XPATH, "//tr/td[1]")]

    def back_to_results():
        wait.until(shown.element_to_be_clickable((By.LINK_TEXT, "Results"))).click()

    browser.get((results / "report.html").as_uri())
    # The app has rendered when its menu lists the results' categories, in reading order.
    wait.until(shown.element_to_be_clickable((By.LINK_TEXT, CATEGORIES[0])))
    menu = [visible_text(link) for link in browser.find_elements(By.TAG_NAME, "a")]
    assert [entry for entry in menu if re.match(r"\d\. ", entry)] == CATEGORIES

    # A user opens the findings: "1. Findings", then the eye button of its one item.
    assert open_category("1. Findings") == ["results/main/findings.html"]
    browser.find_element(By.XPATH, "//tr[td[contains(., 'findings.html')]]//a").click()
    frame = wait.until(shown.presence_of_element_located((By.TAG_NAME, "iframe")))
    browser.switch_to.frame(frame)
    title, paragraph = headline(findings)
    heading = wait.until(shown.visibility_of_element_located((By.TAG_NAME, "h1")))
    assert visible_text(heading) == title
    first_paragraph = browser.find_element(By.XPATH, "(//h1/following::p)[1]")
    assert first_paragraph.is_displayed() and visible_text(first_paragraph) == paragraph
    # Every figure is in the page and drawn (a broken image has no natural width).
    drawn = browser.execute_script("return Array.from(document.images).map(image => image.naturalWidth)")
    assert len(drawn) == len(shown_figures(findings)) and all(width > 0 for width in drawn)
    # The files it links (the tables) download from inside the page, as they are in results/.
    linked = linked_files(findings)
    assert len(browser.find_elements(By.XPATH, "//a[@download]")) == len(linked)
    if linked:
        browser.find_element(By.XPATH, "//a[@download]").click()
        downloaded = downloads / Path(linked[0]).name
        WebDriverWait(browser, WAIT_SECONDS).until(lambda _: downloaded.is_file())
        assert downloaded.read_bytes() == (results / linked[0]).read_bytes()
    browser.switch_to.default_content()
    browser.save_screenshot(str(tmp_path / "findings.png"))

    # Every figure the findings show is a report item of its own, captioned; the signal figures
    # are listed under "3. Diagnostics".
    listed = {}
    for category in CATEGORIES[1:]:
        back_to_results()
        listed[category] = open_category(category)
    browser.save_screenshot(str(tmp_path / "tables.png"))
    for name in SIGNAL_FIGURES:
        assert f"results/main/figures/{name}" in listed["3. Diagnostics"]
    items = {Path(path).name for paths in listed.values() for path in paths}
    assert set(shown_figures(findings)) <= items
    captions = browser.execute_script(
        "return Object.fromEntries(Object.entries(results).map(([p, r]) => [p, r.caption]))"
    )
    for name in shown_figures(findings):
        assert captions[f"results/main/figures/{name}"].strip(), f"{name} has no caption in the report"

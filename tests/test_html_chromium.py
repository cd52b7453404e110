"""The leaderboard page renders in a real browser, offline: headless Chromium dumps the DOM after
the page's script ran. CI's slow stage installs Debian's `chromium` (see the Makefile)."""
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from bench.reports.outputs import write_leaderboard

GOLDEN = Path(__file__).parent / "golden"


def chromium(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed (`apt-get install -y chromium`; the Makefile's test-slow does it)")
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                               "--disable-component-update", "--disable-sync", "--no-first-run",
                               f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_leaderboard_html_renders_table_rows_and_embedded_plots(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    shutil.copy(GOLDEN / "records.jsonl", results / "records.jsonl")
    write_leaderboard(results, published_path=GOLDEN / "published.yaml")
    page = (results / "leaderboard.html").resolve()

    dom = chromium("--dump-dom", page.as_uri()).stdout
    assert "<tr class=\"ours\">" in dom and "<tr class=\"published\">" in dom
    # 2 summary rows (a leader per protocol) + 3 ranked configurations + 1 cross-corpus row
    assert dom.count("<tr class=\"ours\">") == 6
    assert "<img src=\"data:image/png;base64," in dom

    shot = tmp_path / "leaderboard.png"
    chromium(f"--screenshot={shot}", "--window-size=1400,1800", page.as_uri())
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20000  # a blank page compresses far smaller


@pytest.fixture
def browser_page(tmp_path):
    """A 1400 px wide page of headless Chromium (Debian's package) driven by Playwright."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed (`apt-get install -y chromium`; the Makefile's test-slow does it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 900})
        finally:
            browser.close()


def _header(table, name: str):
    return table.locator("thead th").nth(table.locator("thead th").all_inner_texts().index(name))


def _column(table, name: str) -> list[str]:
    """The texts of one column of a table, in the order the rows are shown."""
    index = table.locator("thead th").all_inner_texts().index(name)
    return [row.locator("td").nth(index).inner_text() for row in table.locator("tbody tr").all()]


@pytest.mark.slow
def test_leaderboard_page_in_chromium_fits_1400px_sorts_and_shows_every_plot(tmp_path, browser_page):
    results = tmp_path / "results"
    results.mkdir()
    shutil.copy(GOLDEN / "records.jsonl", results / "records.jsonl")
    _, files = write_leaderboard(results, published_path=GOLDEN / "published.yaml")
    pngs = [f for f in files if f.suffix == ".png"]
    page = browser_page
    page.goto((results / "leaderboard.html").resolve().as_uri())

    # the summary comes first; every table renders rows
    assert page.locator("h2").first.inner_text() == "Summary"
    tables = page.locator("table.sortable")
    assert tables.count() == 4  # summary, toyfaces, cross-corpus, published elsewhere
    assert all(t.locator("tbody tr").count() > 0 for t in tables.all())
    assert tables.first.locator("tbody tr").count() == 2  # one leader per protocol of toyfaces

    # the page and each table fit a 1400 px window, also with a provenance box open
    width = "document.documentElement.scrollWidth"
    assert page.evaluate(width) <= 1400
    for t in tables.all():
        box = t.bounding_box()
        assert box["x"] + box["width"] <= 1400
    main = tables.nth(1)
    main.locator("td.details summary").first.click()
    opened = main.locator("td.details details[open] div").first
    assert opened.is_visible() and "records (7)" in opened.inner_text()
    assert page.evaluate(width) <= 1400

    # sorting by a column reorders the rows
    models = _column(main, "model")
    assert models[:2] == ["fer_cnn", "timm/resnet18"]  # rank order: the benchmarked row first
    _header(main, "ms").click()  # ascending latency
    assert _column(main, "ms")[:3] == ["1.25", "1.25", "9.50"]
    _header(main, "ms").click()  # descending
    assert _column(main, "ms")[0] == "9.50" and _column(main, "model")[0] == "timm/resnet18"

    # every plot is embedded and decoded by the browser
    images = page.locator("img")
    assert images.count() == len(pngs) > 0
    assert all(img.evaluate("i => i.complete && i.naturalWidth > 0") for img in images.all())
    page.screenshot(path=str(tmp_path / "leaderboard-1400.png"), full_page=True)

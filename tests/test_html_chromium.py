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
    assert dom.count("<tr class=\"ours\">") == 4  # 3 ranked configurations + 1 cross-corpus row
    assert "<img src=\"data:image/png;base64," in dom

    shot = tmp_path / "leaderboard.png"
    chromium(f"--screenshot={shot}", "--window-size=1400,1800", page.as_uri())
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20000  # a blank page compresses far smaller

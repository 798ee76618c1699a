"""The HTML report is self-contained, well formed, and renders in headless Chromium when present."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser

import pytest


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.links += [value for name, value in attrs if name in ("src", "href") and value]


def test_html_report_is_self_contained(run_cli, tmp_path):
    output = tmp_path / "report.html"
    code, _, err = run_cli("analyze", "--format", "html", "-o", str(output))
    assert code == 0, err
    text = output.read_text()
    parser = _Collector()
    parser.feed(text)
    assert {"svg", "rect", "table", "style"} <= set(parser.tags)
    assert "script" not in parser.tags and parser.links == []  # nothing fetched from anywhere
    assert "3,161,391,104 MACs" in text and "Verifier findings (0)" in text
    assert text.count("<rect") == 40  # top 40 layers by MACs


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")
def test_report_renders_in_headless_chromium(run_cli, tmp_path):
    output = tmp_path / "report.html"
    run_cli("analyze", "--format", "html", "-o", str(output))
    screenshot = tmp_path / "report.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,1600",
                    f"--screenshot={screenshot}", f"file://{output}"], check=True, capture_output=True, timeout=120)
    data = screenshot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000  # a blank page compresses to a few KB

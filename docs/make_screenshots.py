"""Regenerate the HTML report screenshots in docs/ (needs Debian's `chromium`).

    python docs/make_screenshots.py

Renders the reports into a temporary folder with `segcost analyze --format html`
and screenshots them with headless Chromium (no network, fresh profile) into docs/*.png.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic", "--hide-scrollbars"]
REPORTS = {  # screenshot name -> segcost analyze arguments
    "report-analyze.png": ["analyze", "--format", "html"],
    "report-target.png": ["analyze", "--target", "tda4vm", "--format", "html"],
}
HEIGHT = {"report-analyze.png": 2200, "report-target.png": 4200}


def main() -> int:
    chromium = shutil.which("chromium")
    if chromium is None:
        print("chromium is not installed: apt-get install -y chromium", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="segcost-shots-") as folder:
        for name, args in REPORTS.items():
            page = Path(folder) / (name + ".html")
            subprocess.run([sys.executable, "-m", "segcost", *args, "-o", str(page)], check=True)
            subprocess.run([chromium, *FLAGS, f"--user-data-dir={Path(folder) / 'profile'}",
                            f"--window-size=1200,{HEIGHT[name]}", f"--screenshot={DOCS / name}", page.as_uri()],
                           check=True, capture_output=True, timeout=180)
            print(f"wrote {DOCS / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

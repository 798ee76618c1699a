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
    "report-int8.png": ["optimize", "--int8", "--calib-size", "4"],   # --report PAGE -o MODEL added below
}
HEIGHT = {"report-analyze.png": 2200, "report-target.png": 4200, "report-int8.png": 1500}


def main() -> int:
    chromium = shutil.which("chromium")
    if chromium is None:
        print("chromium is not installed: apt-get install -y chromium", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="segcost-shots-") as folder:
        for name, args in REPORTS.items():
            page = Path(folder) / (name + ".html")
            if args[0] == "optimize":
                args = [*args, "--report", str(page), "-o", str(Path(folder) / "int8.onnx")]
            else:
                args = [*args, "-o", str(page)]
            subprocess.run([sys.executable, "-m", "segcost", *args], check=True, capture_output=True)
            subprocess.run([chromium, *FLAGS, f"--user-data-dir={Path(folder) / 'profile'}",
                            f"--window-size=1200,{HEIGHT[name]}", f"--screenshot={DOCS / name}", page.as_uri()],
                           check=True, capture_output=True, timeout=180)
            print(f"wrote {DOCS / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

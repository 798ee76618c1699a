"""Regenerate the HTML report screenshots in docs/ (needs Debian's `chromium`).

    python docs/make_screenshots.py [NAME.png ...]   # default: all of them

Renders the reports into a temporary folder with `segcost analyze --format html`,
`segcost optimize --int8 --report` and `segcost sweep --pareto-html` (a small real sweep of
four zoo models: 12 exports, a minute or two) and screenshots them with headless Chromium
(no network, fresh profile) into docs/*.png.
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
    "report-sweep-pareto.png": ["sweep"],                              # SPEC -o TABLE --pareto-html PAGE added below
}
HEIGHT = {"report-analyze.png": 2200, "report-target.png": 4200, "report-int8.png": 1500,
          "report-sweep-pareto.png": 1100}
# Cityscapes at 768x384 with 19 classes has published mIoU for these four; 512x384 does not.
SWEEP_SPEC = """measures = ["macs", "latency"]
[axes]
models = ["MobileNetV2+UNetLite", "MobileNetV2S16+DeepLabV3Lite", "MobileNetV2+FPNLite", "RegNetX800MF+FPNLite"]
input_sizes = ["768x384", "512x384", "1024x512"]
num_classes = [19]
targets = ["tda4vm"]
"""


def main(names: list[str]) -> int:
    unknown = [name for name in names if name not in REPORTS]
    if unknown:
        print(f"unknown screenshot {unknown[0]!r} (known: {', '.join(REPORTS)})", file=sys.stderr)
        return 2
    chromium = shutil.which("chromium")
    if chromium is None:
        print("chromium is not installed: apt-get install -y chromium", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="segcost-shots-") as folder:
        for name, args in REPORTS.items():
            if names and name not in names:
                continue
            page = Path(folder) / (name + ".html")
            if args[0] == "optimize":
                args = [*args, "--report", str(page), "-o", str(Path(folder) / "int8.onnx")]
            elif args[0] == "sweep":
                spec = Path(folder) / "sweep.toml"
                spec.write_text(SWEEP_SPEC)
                args = [*args, str(spec), "-o", str(Path(folder) / "sweep.csv"), "-q", "--pareto-cost", "latency",
                        "--pareto-html", str(page)]
            else:
                args = [*args, "-o", str(page)]
            subprocess.run([sys.executable, "-m", "segcost", *args], check=True, capture_output=True)
            subprocess.run([chromium, *FLAGS, f"--user-data-dir={Path(folder) / 'profile'}",
                            f"--window-size=1200,{HEIGHT[name]}", f"--screenshot={DOCS / name}", page.as_uri()],
                           check=True, capture_output=True, timeout=180)
            print(f"wrote {DOCS / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

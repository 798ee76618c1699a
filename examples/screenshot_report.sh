#!/usr/bin/env bash
# Render segcost's HTML report in headless Chromium (Debian: apt-get install chromium) and
# save a PNG screenshot: the report is self-contained, so no server or network is needed.
#   bash examples/screenshot_report.sh [MODEL.onnx] [out.png]
set -euo pipefail
model="${1:-}"
png="${2:-segcost-report.png}"
html="$(mktemp --suffix=.html)"
segcost analyze ${model:+"$model"} --format html -o "$html"
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$(mktemp -d)" --window-size=1280,2000 --screenshot="$png" "file://$html"
echo "wrote $png"

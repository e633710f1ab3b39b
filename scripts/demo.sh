#!/usr/bin/env bash
# Quick start, command 1: install napari-mlmi-interp with a Qt binding ([viewer]) and run the demo.
# With a display, napari opens; headless, it writes mlmi-interp-demo/demo.png and results.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/_env.sh" "viewer"
mlmi-interp demo --out "${MLMI_DEMO_OUT:-mlmi-interp-demo}" "$@"

#!/usr/bin/env bash
# Quick start, command 2: install the test dependencies, then lint, check the import
# contracts and the napari manifest, and run the tests under a virtual display.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/_env.sh" "test"
echo "[test] ruff"
ruff check napari_mlmi_interp tests sample_data benchmarks fuzz
ruff format --check napari_mlmi_interp tests sample_data benchmarks fuzz
echo "[test] import-linter"
lint-imports
echo "[test] npe2 validate"
npe2 validate napari-mlmi-interp
echo "[test] pytest"
export QT_API="${QT_API:-pyqt6}"
if [ -n "${DISPLAY:-}" ]; then
  python -m pytest "$@"
else
  xvfb-run -a -s "-screen 0 1600x1200x24" python -m pytest "$@"
fi

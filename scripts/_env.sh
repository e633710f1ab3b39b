# Sourced by scripts/demo.sh and scripts/test.sh: system packages, venv, pinned torch.
# Usage: . scripts/_env.sh EXTRAS   (EXTRAS: "viewer" for the app with its Qt binding, "test" for the test tools)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${MLMI_VENV:-$ROOT/.venv}"
EXTRAS="${1:-}"

# Virtual display + the libraries Qt/OpenGL need, installed only when missing (root only).
APT_PACKAGES="xvfb xauth libgl1 libegl1 libgl1-mesa-dri libxkbcommon-x11-0 libxcb-cursor0 \
libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-image0 libxcb-randr0 libxcb-render-util0 \
libxcb-shape0 libxcb-xfixes0 libdbus-1-3 libfontconfig1"
# dciodvfy (dicom3tools) lets the tests validate the DICOM Structured Reports the study writes;
# Orthanc with its DICOMweb plugin is the real PACS the DICOMweb tests start (no system service)
if [ "$EXTRAS" = "test" ]; then APT_PACKAGES="$APT_PACKAGES dicom3tools orthanc orthanc-dicomweb"; fi
missing=""
if command -v dpkg-query >/dev/null 2>&1; then
  for p in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
  done
fi
if [ -n "$missing" ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] installing system packages:$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
  else
    echo "[setup] warning: missing system packages (run as root to install):$missing" >&2
  fi
fi

PY="$(command -v python3.11 || command -v python3)"
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV with $PY"
  if ! "$PY" -m venv "$VENV" 2>/dev/null; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
      apt-get install -y -qq python3-venv >/dev/null
    fi
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
  fi
fi
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"
$PIP install -U pip setuptools wheel
# torch first, from the pinned CPU wheel; constraints keep every later install on it.
$PIP install torch==2.13.0
if [ -n "$EXTRAS" ]; then
  $PIP install -c constraints.txt ".[$EXTRAS]"
else
  $PIP install -c constraints.txt .
fi
# ONNX models (the onnx extra, in the test extras): onnx2torch without its torchvision
# requirement, which would pull a CUDA build of torch (models/loaders/onnx.py says why)
if [ "$EXTRAS" = "test" ]; then $PIP install --no-deps "onnx2torch>=1.5"; fi
export PATH="$VENV/bin:$PATH"

#!/usr/bin/env bash
# Set up a fresh Debian/Ubuntu machine for napari-chromagan: the system libraries that Qt and
# napari need to run headless (under Xvfb), then a virtual environment in .venv with the
# package, its test extras (pytest, ruff...) and a Qt binding. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  if ! dpkg -s xvfb libxcb-cursor0 libgl1 >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      xvfb xauth libgl1 libegl1 libgl1-mesa-dri libdbus-1-3 libfontconfig1 libglib2.0-0 \
      libxkbcommon-x11-0 libx11-xcb1 libxext6 libxcb-cursor0 libxcb-icccm4 libxcb-image0 \
      libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 \
      libxcb-xfixes0 libxcb-sync1 libxcb-shm0 libxcb-xkb1 >/dev/null
  fi
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# The CPU build of torch first: an unpinned `torch` would pull the newest CUDA build and
# several GB of CUDA libraries. On a GPU machine install the torch build you want instead.
.venv/bin/python -m pip install -q "torch==${TORCH_VERSION:-2.13.0}"
.venv/bin/python -m pip install -q -e ".[all,testing]"
echo "napari-chromagan is installed in .venv"

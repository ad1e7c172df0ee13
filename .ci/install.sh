#!/usr/bin/env bash
# Set up a fresh Debian machine for mixfuse-med's tests: the Debian packages napari's
# virtual screen, DICOM validation and the PACS test need, then the Python packages.
# torch==2.13.0 (the CPU build) goes first: a bare "torch" requirement would pull a
# multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(
  xvfb xauth libgl1 libgl1-mesa-dri libegl1 libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0
  libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0
  libxcb-shape0 libxcb-cursor0 libdbus-1-3 libfontconfig1
  dicom3tools orthanc
)
missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

python3 -m pip install -q torch==2.13.0
python3 -m pip install -q -e ".[dev,napari,cluster]"

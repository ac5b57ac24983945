#!/usr/bin/env bash
# Make the source tree importable in place for development (no reinstall after edits):
# links kernels/ and converters/ under edgegen/ as the wheel does, builds the C++
# extension into build/dev and links it beside the kernels, and puts the repo on the
# active venv's sys.path. Re-run after changing C++ sources.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
ln -sfn ../kernels edgegen/kernels
ln -sfn ../converters edgegen/converters
cmake -S . -B build/dev -DCMAKE_BUILD_TYPE=Release -DPython_EXECUTABLE="$(command -v python)" >/dev/null
cmake --build build/dev -j2
ln -sf "$root"/build/dev/_cpp*.so kernels/
site=$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$root" > "$site/edgegen-dev.pth"
echo "edgegen importable from $root"

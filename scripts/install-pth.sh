#!/usr/bin/env bash
# Makes the Skiff SDK importable by every python3 a user may have on PATH (the
# first one on PATH and Debian's /usr/bin/python3) with a .pth file.
#   install-pth.sh DIR     point skiff.pth at DIR
#   install-pth.sh --remove
set -euo pipefail
pythons=()
for p in "$(command -v python3 || true)" /usr/bin/python3; do
  [ -n "$p" ] && [ -x "$p" ] && pythons+=("$p")
done
for py in "${pythons[@]}"; do
  site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  if [ "$1" = "--remove" ]; then
    rm -f "$site/skiff.pth"
  else
    mkdir -p "$site"
    echo "$1" > "$site/skiff.pth"
    echo "skiff SDK: $site/skiff.pth -> $1 ($py)"
  fi
done

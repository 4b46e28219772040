#!/usr/bin/env bash
# The system tools `make test` needs: redis-server, ffmpeg + ffprobe, chromium.
# Present: say nothing and exit 0. Missing, as root with apt: install the Debian packages
# (the same step on a laptop and in CI, see .ci/run). Missing otherwise: one line naming the
# packages, exit 1, before any test starts.
set -euo pipefail

need=()
command -v redis-server >/dev/null || need+=(redis-server)
{ command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null; } || need+=(ffmpeg)
{ [ -x /usr/bin/chromium ] || command -v chromium >/dev/null; } || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "make test: installing ${need[*]} (apt-get)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  exit 0
fi
echo "make test needs these system packages: ${need[*]} (e.g. sudo apt-get install ${need[*]})" >&2
exit 1

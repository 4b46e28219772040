#!/usr/bin/env bash
# What `make setup` needs from the machine, checked before it is used:
#   check-setup-prereqs.sh python PYTHON   Python 3.11+ with venv (Debian splits it out: python3-venv)
#   check-setup-prereqs.sh npm             npm, for the pinned front-end packages
# Present: silent, exit 0. Missing: one line naming it and the Debian package, exit 1.
set -u

case "${1:-}" in
  python)
    py=${2:-python3}
    if ! command -v "$py" >/dev/null; then
      problem="$py not found: Python 3.11+ is needed (apt-get install python3 python3-venv)"
    elif ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      problem="$py is $("$py" -V 2>&1): Python 3.11+ is needed (make setup PYTHON=python3.11)"
    elif ! "$py" -c 'import ensurepip, venv' 2>/dev/null; then
      problem="$py has no venv module: apt-get install python3-venv"
    fi ;;
  npm)
    command -v npm >/dev/null || problem="npm not found: it installs the pinned front-end files (apt-get install npm)" ;;
  *)
    echo "usage: $0 python PYTHON | npm" >&2; exit 2 ;;
esac

if [ -n "${problem:-}" ]; then
  echo "make setup: $problem" >&2
  exit 1
fi

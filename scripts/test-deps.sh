#!/usr/bin/env bash
# What `make test` needs besides the Python venv: Debian's chromium (the annotator-view browser tests drive it
# through Playwright, which never downloads a browser here) and Label Studio in its own venv (the review tests
# start a real server). Installs what it can; for what needs root it installs when run as root (CI containers)
# and otherwise stops with one line naming the package and the command.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHROMIUM="${ACD_CHROMIUM:-/usr/bin/chromium}"

if [[ ! -x "$CHROMIUM" ]]; then
  if [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null 2>&1; then
    echo "make test: installing Debian's chromium for the browser tests (apt-get install -y chromium)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "make test needs the chromium package for the browser tests: run 'sudo apt-get install -y chromium' (or set ACD_CHROMIUM=/path/to/chromium), then make test again" >&2
    exit 1
  fi
fi

# Chromaprint (Debian libchromaprint-tools: fpcalc and libchromaprint1): audio fingerprints for media dedup
# (acd.media.fingerprint calls the library; the tests compare it with fpcalc).
if ! command -v fpcalc >/dev/null 2>&1; then
  if [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null 2>&1; then
    echo "make test: installing Debian's libchromaprint-tools for audio dedup (apt-get install -y libchromaprint-tools)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libchromaprint-tools >/dev/null
  else
    echo "make test needs the libchromaprint-tools package for audio dedup: run 'sudo apt-get install -y libchromaprint-tools', then make test again" >&2
    exit 1
  fi
fi

if [[ ! -x "$ROOT/.venv-labelstudio/bin/label-studio" ]]; then
  bash "$ROOT/scripts/labelstudio.sh" install
fi

#!/usr/bin/env bash
# Label Studio for human review: a server in its own venv (never a library dependency of the engine).
#
#   scripts/labelstudio.sh [start]   install into .venv-labelstudio if missing, start headless on 127.0.0.1,
#                                    print URL + login; idempotent (a running server is left alone)
#   scripts/labelstudio.sh stop      stop the server recorded in the PID file
#   scripts/labelstudio.sh status    exit 0 when the recorded server answers /health
#   scripts/labelstudio.sh install   only create the venv
#
# Knobs (env): LS_PORT (8080), LS_DATA_DIR (.cache/labelstudio/data), LS_DOCUMENT_ROOT (the checkout: run
# dirs under runs/ or out/ are subfolders of it, which LocalFiles storage requires), LS_TEMPLATE (a migrated
# data dir copied in when LS_DATA_DIR does not exist yet: ~5 s start instead of a ~50 s migration),
# LS_VENV, LS_PYTHON, LABEL_STUDIO_USERNAME.
# The API token and password are generated once and kept in files inside the data dir (mode 600), so a
# copied data dir keeps working with its own token. The token is never printed: read it from the file.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LS_VERSION="1.23.2"
LS_VENV="${LS_VENV:-$ROOT/.venv-labelstudio}"
LS_PORT="${LS_PORT:-8080}"
LS_DATA_DIR="${LS_DATA_DIR:-$ROOT/.cache/labelstudio/data}"
LS_DOCUMENT_ROOT="${LS_DOCUMENT_ROOT:-$ROOT}"
LS_START_TIMEOUT="${LS_START_TIMEOUT:-300}"
LS_USER="${LABEL_STUDIO_USERNAME:-admin@acd.local}"
PIDFILE="$LS_DATA_DIR/labelstudio.pid"
LOGFILE="$LS_DATA_DIR/labelstudio.log"
TOKEN_FILE="$LS_DATA_DIR/acd-token"
PASSWORD_FILE="$LS_DATA_DIR/acd-password"
URL="http://127.0.0.1:$LS_PORT"

log() { echo "[labelstudio] $*" >&2; }

install_venv() {
  if [[ -x "$LS_VENV/bin/label-studio" && -f "$LS_VENV/.ls-$LS_VERSION" ]]; then return 0; fi
  local py="${LS_PYTHON:-}"
  if [[ -z "$py" ]]; then py="$(command -v python3.11 || command -v python3)"; fi
  log "installing label-studio==$LS_VERSION into $LS_VENV (a few minutes, once)"
  local t0=$SECONDS
  [[ -x "$LS_VENV/bin/python" ]] || "$py" -m venv "$LS_VENV"
  "$LS_VENV/bin/python" -m pip install -q -U pip
  "$LS_VENV/bin/python" -m pip install -q "label-studio==$LS_VERSION"
  touch "$LS_VENV/.ls-$LS_VERSION"
  log "installed in $((SECONDS - t0)) s"
}

healthy() { curl -fsS --max-time 3 "$URL/health" 2>/dev/null | grep -q UP; }

running_pid() {
  # The recorded PID, only when that process is still alive.
  [[ -f "$PIDFILE" ]] || return 1
  local pid; pid="$(cat "$PIDFILE")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

port_free() {
  # Label Studio silently moves to port+1 when the port is taken, so refuse instead of guessing.
  "${LS_VENV}/bin/python" - "$LS_PORT" <<'EOF'
import socket, sys
s = socket.socket()
# SO_REUSEADDR like the server itself: connections in TIME_WAIT after a stop do not make the port taken.
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
EOF
}

secret_file() {
  # A random secret, created once (mode 600); printed to stdout only for the caller to export, never logged.
  local f="$1" nbytes="$2"
  if [[ ! -s "$f" ]]; then
    (umask 077; "$LS_VENV/bin/python" -c "import secrets; print(secrets.token_hex($nbytes))" > "$f")
  fi
  cat "$f"
}

print_info() {
  echo "Label Studio is up: $URL"
  echo "  login:    $LS_USER / $(cat "$PASSWORD_FILE")"
  echo "  API token: export LABEL_STUDIO_API_KEY=\$(cat $TOKEN_FILE)"
  echo "  recipe:   review.label_studio: {url: $URL, token_env: LABEL_STUDIO_API_KEY, document_root: $LS_DOCUMENT_ROOT}"
  echo "  stop:     $0 stop"
}

start() {
  install_venv
  if pid="$(running_pid)" && healthy; then
    log "already running (pid $pid)"; print_info; return 0
  fi
  if [[ -n "${pid:-}" ]]; then
    log "pid $pid is alive but $URL/health does not answer yet; waiting"
  else
    rm -f "$PIDFILE"
    if [[ ! -d "$LS_DATA_DIR" && -n "${LS_TEMPLATE:-}" && -d "${LS_TEMPLATE}" ]]; then
      mkdir -p "$(dirname "$LS_DATA_DIR")"
      cp -a "$LS_TEMPLATE" "$LS_DATA_DIR"
      rm -f "$PIDFILE" "$LOGFILE"
    fi
    mkdir -p "$LS_DATA_DIR"
    port_free || { log "port $LS_PORT on 127.0.0.1 is taken (set LS_PORT)"; exit 1; }
    local token password
    token="$(secret_file "$TOKEN_FILE" 20)"   # 40 hex chars: the legacy DRF token format
    password="$(secret_file "$PASSWORD_FILE" 8)"
    # The user, password and legacy token only take effect when the organisation is first created
    # (first start on an empty data dir); later starts keep what the database holds.
    (
      cd "$LS_DATA_DIR"
      export LABEL_STUDIO_BASE_DATA_DIR="$LS_DATA_DIR"
      export LABEL_STUDIO_USERNAME="$LS_USER" LABEL_STUDIO_PASSWORD="$password" LABEL_STUDIO_USER_TOKEN="$token"
      export LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true
      export LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT="$LS_DOCUMENT_ROOT"
      export SENTRY_DSN= FRONTEND_SENTRY_DSN= LATEST_VERSION_CHECK=false COLLECT_ANALYTICS=false
      # Webhooks to the pipeline's loopback endpoint are refused otherwise.
      export SSRF_PROTECTION_ENABLED=false
      export LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK=true
      unset LABEL_STUDIO_API_KEY
      # setsid: its own process group, so `stop` ends the server and its children together.
      setsid nohup "$LS_VENV/bin/label-studio" start --no-browser --internal-host 127.0.0.1 -p "$LS_PORT" \
        --data-dir "$LS_DATA_DIR" >"$LOGFILE" 2>&1 < /dev/null &
      echo $! > "$PIDFILE"
    )
    log "starting (pid $(cat "$PIDFILE"), log $LOGFILE)"
  fi
  local t0=$SECONDS
  until healthy; do
    if ! running_pid >/dev/null; then log "server exited; last log lines:"; tail -n 30 "$LOGFILE" >&2; exit 1; fi
    if (( SECONDS - t0 > LS_START_TIMEOUT )); then log "no answer on $URL after ${LS_START_TIMEOUT}s"; exit 1; fi
    sleep 1
  done
  log "up after $((SECONDS - t0)) s"
  print_info
}

stop() {
  local pid
  if pid="$(running_pid)"; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    log "stopped (pid $pid)"
  fi
  rm -f "$PIDFILE"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) running_pid >/dev/null && healthy ;;
  install) install_venv ;;
  *) echo "usage: $0 [start|stop|status|install]" >&2; exit 2 ;;
esac

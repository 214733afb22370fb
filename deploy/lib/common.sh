# shellcheck shell=bash
# Shared by the reeve-* helper scripts: where Reeve is installed and how to run its commands.
# Installed as /usr/local/lib/reeve/common.sh; the settings come from /etc/reeve/reeve.conf, which
# install.sh writes. Both are found relative to this file, so a tree staged with
# `install.sh --root DIR` works from DIR as it will from /.

REEVE_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REEVE_ROOT=$(cd "$REEVE_LIB_DIR/../../../.." && pwd)
[ "$REEVE_ROOT" = / ] && REEVE_ROOT=
REEVE_CONF=${REEVE_CONF:-$REEVE_ROOT/etc/reeve/reeve.conf}
if [ ! -r "$REEVE_CONF" ]; then
  echo "reeve: $REEVE_CONF not found: run deploy/scripts/install.sh from the Reeve checkout" >&2
  exit 2
fi
# shellcheck source=/dev/null
. "$REEVE_CONF"
REEVE_PROVIDERS_DIR=${REEVE_PROVIDERS_DIR:-$REEVE_LIB_DIR/credential-providers}

# Run a command as the service user (when called as root, e.g. through sudo) in the checkout.
as_reeve_user() {
  if [ "$(id -u)" -eq 0 ] && [ "$REEVE_USER" != root ]; then
    (cd "$REEVE_DIR" && exec runuser -u "$REEVE_USER" -- env HOME="$REEVE_USER_HOME" "$@")
  else
    (cd "$REEVE_DIR" && exec "$@")
  fi
}

# The environment the services run with: systemd gives them nothing of a shell's, so Django reads
# .env alone. Commands the helpers run get the same, not a PULSE_API_PORT or DATABASE_URL someone
# exported (install.sh --keep-env, for staged test installs, keeps the caller's environment instead).
service_env() {
  SERVICE_ENV=()
  [ "${REEVE_KEEP_ENV:-0}" = 1 ] && return 0
  SERVICE_ENV=(env -i "HOME=$REEVE_USER_HOME" "USER=$REEVE_USER" "LOGNAME=$REEVE_USER"
    "PATH=${REEVE_SERVICE_PATH:-/usr/local/bin:/usr/bin:/bin}" "LANG=${LANG:-C.UTF-8}"
    DJANGO_SETTINGS_MODULE=reeve_site.settings)
}

# manage.py on the interpreter the units run (the project's .venv): the same code, settings and database.
reeve_manage() {
  service_env
  if [ -x "$REEVE_DIR/.venv/bin/python" ]; then
    as_reeve_user "${SERVICE_ENV[@]}" "$REEVE_DIR/.venv/bin/python" manage.py "$@"
  else
    as_reeve_user "${SERVICE_ENV[@]}" "$REEVE_UV" run --quiet --frozen --no-sync python manage.py "$@"
  fi
}

# Is systemd the running init here? (Not in containers and CI: service checks are skipped there.)
# REEVE_NO_SYSTEMD=1 skips them anywhere (the tests use it).
have_systemd() {
  [ "${REEVE_NO_SYSTEMD:-0}" != 1 ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1
}

# GET a URL; prints the body, fails on a connection error or an HTTP error status.
http_get() {
  if command -v curl >/dev/null 2>&1; then
    curl --silent --show-error --fail --max-time "${2:-5}" "$1"
  else
    python3 - "$1" "${2:-5}" <<'PY'
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])) as r:
        sys.stdout.write(r.read().decode())
except Exception as exc:
    sys.stderr.write(f"{exc}\n")
    sys.exit(22)
PY
  fi
}

api_healthy() {
  local body
  body=$(http_get "$REEVE_API_URL/api/health" 2>&1) || { echo "$body"; return 1; }
  case "$body" in
    *'"healthy"'*) return 0 ;;
    *) echo "$body"; return 1 ;;
  esac
}

# What healthy means, for reeve-status and reeve-health-check alike: the services running (where
# systemd runs), the API answering /api/health, and no FAIL among doctor's checks.
# Sets HEALTH_PROBLEMS (one line each), SERVICE_LINES (a table) and DOCTOR_REPORT (doctor's lines).
check_health() { # safe under set -e
  HEALTH_PROBLEMS=()
  SERVICE_LINES=()
  DOCTOR_REPORT=
  local unit active enabled detail
  if have_systemd; then
    for unit in reeve-daemon reeve-web reeve-worker reeve-telegram; do
      active=$(systemctl is-active "$unit" 2>/dev/null) || true
      enabled=$(systemctl is-enabled "$unit" 2>/dev/null) || true
      SERVICE_LINES+=("$(printf '%-15s %-10s %s' "$unit" "${active:-unknown}" "${enabled:-not-installed}")")
      case "$unit" in
        reeve-telegram)
          if [ "$enabled" = enabled ] && [ "$active" != active ]; then
            HEALTH_PROBLEMS+=("$unit is enabled but ${active:-unknown}: sudo systemctl start reeve-telegram; reeve-logs telegram")
          fi
          ;;
        *)
          [ "$active" = active ] ||
            HEALTH_PROBLEMS+=("$unit is ${active:-unknown}: sudo systemctl start reeve-daemon; reeve-logs ${unit#reeve-}")
          ;;
      esac
    done
  fi
  if ! detail=$(api_healthy); then
    HEALTH_PROBLEMS+=("API health check failed ($REEVE_API_URL/api/health): ${detail//$'\n'/ }")
  fi
  # --no-api: the API was asked above; doctor's FAIL lines say what to fix in the configuration.
  DOCTOR_REPORT=$(reeve_manage doctor --no-api 2>&1) || true
  local line
  while IFS= read -r line; do
    case "$line" in FAIL*) HEALTH_PROBLEMS+=("doctor: $(tr -s ' ' <<<"${line#FAIL}" | sed 's/^ //')") ;; esac
  done <<<"$DOCTOR_REPORT"
  if [ -z "$DOCTOR_REPORT" ] || ! grep -qE '^(ok|WARN|FAIL) ' <<<"$DOCTOR_REPORT"; then
    HEALTH_PROBLEMS+=("manage.py doctor did not run: ${DOCTOR_REPORT//$'\n'/ }")
  fi
}

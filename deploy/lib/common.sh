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

# manage.py in the project's environment: the same code and database as the services.
reeve_manage() {
  if [ -x "$REEVE_UV" ]; then
    as_reeve_user "$REEVE_UV" run --quiet --frozen --no-sync python manage.py "$@"
  else
    as_reeve_user "$REEVE_DIR/.venv/bin/python" manage.py "$@"
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

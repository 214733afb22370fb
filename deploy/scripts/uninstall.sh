#!/usr/bin/env bash
# Remove everything deploy/scripts/install.sh added:
#   sudo ./deploy/scripts/uninstall.sh           stop and remove the services, scripts, sudoers,
#                                                logrotate and cron jobs; keep the data
#   sudo ./deploy/scripts/uninstall.sh --purge   also delete the data directory (database, backups, logs)
#   --root DIR   undo an `install.sh --root DIR` staging instead of the system
set -euo pipefail

usage() { sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; }

ROOT=
PURGE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --purge) PURGE=1; shift ;;
    --root) ROOT=${2:?--root needs a directory}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "uninstall.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
say() { echo "uninstall.sh: $*"; }
die() { echo "uninstall.sh: $*" >&2; exit 1; }

if [ -n "$ROOT" ]; then
  [ -d "$ROOT" ] || die "no staging root $ROOT"
  ROOT=$(cd "$ROOT" && pwd)
  [ "$ROOT" != / ] || die "--root / is the real system: run without --root instead"
else
  [ "$(id -u)" -eq 0 ] || die "run it with sudo: sudo $0 $*"
fi

REEVE_DATA_DIR=
REEVE_USER_HOME=
if [ -r "$ROOT/etc/reeve/reeve.conf" ]; then
  # shellcheck source=/dev/null
  . "$ROOT/etc/reeve/reeve.conf"
fi

UNITS=(reeve-telegram reeve-daemon reeve-web reeve-worker)
if [ -z "$ROOT" ] && [ -d /run/systemd/system ]; then
  for unit in "${UNITS[@]}"; do
    systemctl disable --now "$unit.service" >/dev/null 2>&1 || true
  done
fi

FILES=(/etc/reeve/reeve.conf /etc/sudoers.d/reeve /etc/logrotate.d/reeve /etc/cron.d/reeve
  /usr/local/lib/reeve/common.sh /usr/local/lib/reeve/journal-relay
  /usr/local/bin/reeve-status /usr/local/bin/reeve-logs /usr/local/bin/reeve-queue
  /usr/local/bin/reeve-heartbeat /usr/local/bin/reeve-backup /usr/local/bin/reeve-health-check
  /usr/local/bin/reeve-credential-keepalive /usr/local/bin/reeve-prune-history)
for unit in "${UNITS[@]}"; do FILES+=("/etc/systemd/system/$unit.service"); done
for file in "${FILES[@]}"; do
  if [ -e "$ROOT$file" ] || [ -L "$ROOT$file" ]; then
    rm -f "$ROOT$file"
    say "removed $file"
  fi
done
# Our own directories go whole: providers (ours and any a user added), systemd's cache and state
# for the units.
for dir in /usr/local/lib/reeve /etc/reeve /var/cache/reeve /var/lib/reeve-daemon /var/lib/private/reeve-daemon; do
  if [ -e "$ROOT$dir" ] || [ -L "$ROOT$dir" ]; then
    rm -rf -- "$ROOT$dir"
    say "removed $dir"
  fi
done
if [ -z "$ROOT" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl reset-failed "${UNITS[@]/%/.service}" >/dev/null 2>&1 || true
fi

if [ "$PURGE" -eq 1 ]; then
  if [ -z "$REEVE_DATA_DIR" ]; then
    say "--purge: no record of the data directory (/etc/reeve/reeve.conf was already gone); delete it by hand"
  else
    case "$REEVE_DATA_DIR" in
      / | /home | /root | /usr* | /etc* | /var | "$REEVE_USER_HOME" | "$REEVE_USER_HOME/")
        die "refusing to delete $REEVE_DATA_DIR: not a Reeve data directory" ;;
    esac
    if [ -e "$ROOT$REEVE_DATA_DIR" ]; then
      rm -rf -- "$ROOT$REEVE_DATA_DIR"
      say "purged $REEVE_DATA_DIR"
    fi
  fi
fi

# A staging root is left as empty as install.sh found it.
if [ -n "$ROOT" ]; then
  find "$ROOT" -mindepth 1 -depth -type d -empty -delete
fi
say "done"

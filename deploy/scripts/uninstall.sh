#!/usr/bin/env bash
# Remove everything deploy/scripts/install.sh added:
#   sudo ./deploy/scripts/uninstall.sh           stop and remove the services, scripts, sudoers,
#                                                logrotate and cron jobs; keep the data
#   sudo ./deploy/scripts/uninstall.sh --purge   also delete the data directory (database, backups, logs)
#                A plain uninstall keeps /etc/reeve/kept-data (where the data is, whose), so a later
#                --purge still finds the data directory; --purge removes it too.
#   --root DIR   undo an `install.sh --root DIR` staging instead of the system
set -euo pipefail

# The comment block at the top of this file, up to its first command.
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; }

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
REEVE_USER=
REEVE_USER_HOME=
MARKER=.reeve-data-dir  # install.sh writes it into the data directory
KEPT=/etc/reeve/kept-data  # a plain uninstall's record of the data it kept, for a later --purge
if [ -r "$ROOT/etc/reeve/reeve.conf" ]; then
  # shellcheck source=/dev/null
  . "$ROOT/etc/reeve/reeve.conf"
elif [ -r "$ROOT$KEPT" ]; then
  # shellcheck source=/dev/null
  . "$ROOT$KEPT"
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

# --purge deletes one directory as root, so it must be Reeve's own: the recorded path is resolved
# (symlinks, ..), must not be a system folder or the user's home, must hold Reeve's marker (written by
# install.sh) or its database, and must belong to the service user (under --root: to whoever owns
# the staging root, since nothing there is chowned). Anything else is refused, naming the path.
purge_data_dir() {
  local recorded=$1 target resolved system owner expected
  case "$recorded" in
    /*) ;;
    *) die "refusing to purge '$recorded': not an absolute path" ;;
  esac
  target=$ROOT$recorded
  if [ ! -e "$target" ] && [ ! -L "$target" ]; then
    say "--purge: $recorded is already gone"
    return
  fi
  resolved=$(realpath -e -- "$target") || die "refusing to purge $recorded: it does not resolve"
  if [ -n "$ROOT" ]; then
    case "$resolved" in
      "$ROOT"/?*) system=${resolved#"$ROOT"} ;;
      *) die "refusing to purge $recorded: it resolves to $resolved, outside the staging root $ROOT" ;;
    esac
  else
    system=$resolved
  fi
  case "$system" in
    / | /bin | /boot | /dev | /etc | /etc/* | /home | /lib | /lib32 | /lib64 | /media | /mnt | /opt | /proc \
      | /root | /run | /sbin | /srv | /sys | /tmp | /usr | /usr/* | /var | /var/lib | /var/log | /var/cache \
      | /var/tmp | /var/opt | "${REEVE_USER_HOME%/}")
      die "refusing to purge $recorded (resolves to $system): a system folder or the home directory" ;;
  esac
  [ -d "$resolved" ] || die "refusing to purge $recorded: not a directory"
  if [ ! -f "$resolved/$MARKER" ] && [ ! -f "$resolved/pulse_queue.db" ]; then
    die "refusing to purge $recorded (resolves to $system): it holds neither $MARKER nor pulse_queue.db, so it is not Reeve's data directory; delete it by hand if you are sure"
  fi
  owner=$(stat -c %U -- "$resolved")
  if [ -n "$ROOT" ]; then expected=$(stat -c %U -- "$ROOT"); else expected=${REEVE_USER:-}; fi
  [ "$owner" = "$expected" ] \
    || die "refusing to purge $recorded (resolves to $system): owned by ${owner}, not by the service user ${expected:-(unknown)}"
  rm -rf -- "$resolved"
  say "purged $system"
}

if [ "$PURGE" -eq 1 ]; then
  if [ -z "$REEVE_DATA_DIR" ]; then
    say "--purge: no record of the data directory (/etc/reeve/reeve.conf and $KEPT were already gone); delete it by hand"
  else
    purge_data_dir "$REEVE_DATA_DIR"
  fi
elif [ -n "$REEVE_DATA_DIR" ]; then
  mkdir -p "$ROOT/etc/reeve"
  {
    echo "# Written by uninstall.sh: the data it kept; \`uninstall.sh --purge\` reads it and deletes both."
    printf 'REEVE_DATA_DIR=%q\nREEVE_USER=%q\nREEVE_USER_HOME=%q\n' "$REEVE_DATA_DIR" "$REEVE_USER" "$REEVE_USER_HOME"
  } >"$ROOT$KEPT"
  chmod 0644 "$ROOT$KEPT"
  say "kept the data in $REEVE_DATA_DIR (recorded in $KEPT: uninstall.sh --purge deletes both)"
fi

# A staging root is left as empty as install.sh found it.
if [ -n "$ROOT" ]; then
  find "$ROOT" -mindepth 1 -depth -type d -empty -delete
fi
say "done"

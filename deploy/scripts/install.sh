#!/usr/bin/env bash
# Install Reeve as systemd services for the invoking user:
#   sudo ./deploy/scripts/install.sh
# Installs the units (reeve-web, reeve-worker, reeve-telegram and reeve-daemon, the web+worker pair),
# the reeve-* helper scripts, a sudoers allowlist, logrotate and cron; enables and starts the services
# and checks /api/health. Running it again changes only what changed.
#   --root DIR   render everything under DIR instead of /, touching nothing else (no root needed)
#   --user NAME  the user the services run as (default: the user who ran sudo)
#   --no-start   install and enable, but do not (re)start anything
#   --keep-env   read settings from this shell's environment as well as .env, here and in the helper
#                scripts (for staged test installs; the services themselves only ever read .env)
#   --allow-root-agent  let the services (and so the agent, with its shell) run as root; refused otherwise
# CLAUDE_COMMAND=/path/to/claude (in the environment or .env) names the Claude Code CLI for the credential
# keep-alive cron job when it is not on the services' PATH; install.sh finds it otherwise and writes it.
set -euo pipefail

# The comment block at the top of this file, up to its first command.
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; }

ROOT=
RUN_USER=${SUDO_USER:-}
START=1
KEEP_ENV=0
ALLOW_ROOT_AGENT=0
while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT=${2:?--root needs a directory}; shift 2 ;;
    --user) RUN_USER=${2:?--user needs a name}; shift 2 ;;
    --no-start) START=0; shift ;;
    --keep-env) KEEP_ENV=1; shift ;;
    --allow-root-agent) ALLOW_ROOT_AGENT=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "install.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done

DEPLOY=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
REEVE_DIR=$(cd "$DEPLOY/.." && pwd)
say() { echo "install.sh: $*"; }
die() { echo "install.sh: $*" >&2; exit 1; }

if [ -n "$ROOT" ]; then
  mkdir -p "$ROOT"
  ROOT=$(cd "$ROOT" && pwd)
  [ "$ROOT" != / ] || die "--root / is the real system: run without --root instead"
  RUN_USER=${RUN_USER:-$(id -un)}
else
  [ "$(id -u)" -eq 0 ] || die "run it with sudo: sudo $0"
  [ -n "$RUN_USER" ] || die "run it with sudo from your own account (or pass --user NAME): the services run as that user, not root"
fi
passwd_line=$(getent passwd "$RUN_USER") || die "no such user: $RUN_USER"
# The agent runs as the services' user, with a shell: as root it could change anything on the machine.
if [ "$(cut -d: -f3 <<<"$passwd_line")" = 0 ]; then
  [ "$ALLOW_ROOT_AGENT" -eq 1 ] ||
    die "the services, and so the agent with its shell, would run as root ($RUN_USER): run with sudo from your own account, or pass --user NAME (or --allow-root-agent if you really mean it)"
  say "WARNING: the services and the agent run as root (--allow-root-agent)"
fi
RUN_HOME=$(cut -d: -f6 <<<"$passwd_line")
RUN_GROUP=$(id -gn "$RUN_USER")

# --- the user's tools ---------------------------------------------------------------------------
find_uv() {
  local candidate
  for candidate in "${UV:-}" "$RUN_HOME/.local/bin/uv" "$RUN_HOME/.cargo/bin/uv" /usr/local/bin/uv \
    /usr/bin/uv "$(command -v uv || true)" "$REEVE_DIR/.tools/bin/uv"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}
UV_BIN=$(find_uv) || die "uv not found (looked in ~/.local/bin, ~/.cargo/bin, /usr/local/bin, PATH, .tools/): install uv, or run ./reeve once, or pass UV=/path/to/uv"
# The daemon unit's journal relay runs as a throwaway user (DynamicUser, ProtectHome=yes): its python3
# must live outside every home directory (`command -v python3` may be a pyenv shim under ~root).
system_python() {
  local candidate resolved
  for candidate in /usr/bin/python3 /usr/local/bin/python3; do
    resolved=$(readlink -f "$candidate" 2>/dev/null) || continue
    case "$resolved" in /home/* | /root/* | "$RUN_HOME"/*) continue ;; esac
    [ -x "$resolved" ] && { echo "$candidate"; return 0; }
  done
  return 1
}
PYTHON3=$(system_python) || die "no python3 under /usr/bin or /usr/local/bin: the reeve-daemon unit cannot use one inside a home directory; install the system's (sudo apt-get install python3)"
SYSTEMCTL=$(command -v systemctl || echo /usr/bin/systemctl)
JOURNALCTL=$(command -v journalctl || echo /usr/bin/journalctl)

# Run a command as the service user in the checkout (when staging: as whoever runs install.sh).
as_user() {
  if [ -z "$ROOT" ] && [ "$(id -u)" -eq 0 ] && [ "$RUN_USER" != root ]; then
    (cd "$REEVE_DIR" && runuser -u "$RUN_USER" -- env HOME="$RUN_HOME" "$@")
  else
    (cd "$REEVE_DIR" && "$@")
  fi
}

if [ ! -x "$REEVE_DIR/.venv/bin/python" ]; then
  say "creating the project environment (uv sync --no-dev: runtime dependencies only)"
  as_user "$UV_BIN" sync --frozen --quiet --no-dev
fi
# The units run .venv/bin/python as $RUN_USER with ProtectHome=read-only: its interpreter must be one
# that user can run, not one inside another user's home (a venv made by root from a pyenv under ~root).
VENV_PYTHON=$REEVE_DIR/.venv/bin/python
venv_base=$(readlink -f "$VENV_PYTHON")
case "$venv_base" in
  "$RUN_HOME"/*) ;;
  /home/* | /root/*)
    unreachable="$VENV_PYTHON runs $venv_base, inside another user's home, which the services (as $RUN_USER) cannot reach: recreate it as $RUN_USER with a system python (rm -rf .venv && ./reeve help)"
    [ -n "$ROOT" ] || die "$unreachable"
    say "WARNING: $unreachable"
    ;;
esac
as_user "$VENV_PYTHON" -c "import django" ||
  die "$VENV_PYTHON (-> $venv_base) does not run as $RUN_USER: recreate the environment as $RUN_USER (rm -rf .venv && ./reeve help)"

SERVICE_PATH="$RUN_HOME/.local/bin:$RUN_HOME/bin:$(dirname "$UV_BIN"):/usr/local/bin:/usr/bin:/bin"
SERVICE_PATH=$(tr ':' '\n' <<<"$SERVICE_PATH" | awk '!seen[$0]++' | paste -sd: -)

# Settings as the services will see them: .env and nothing of this shell's environment (systemd gives
# the units none of it), so the helper scripts, the migration and the services agree.
service_env=(env -i "HOME=$RUN_HOME" "USER=$RUN_USER" "LOGNAME=$RUN_USER" "PATH=$SERVICE_PATH"
  "LANG=${LANG:-C.UTF-8}" DJANGO_SETTINGS_MODULE=reeve_site.settings)
if [ "$KEEP_ENV" -eq 1 ]; then
  service_env=(env)
else
  ignored=$(env | grep -oE '^(PULSE_[A-Z_]*|REEVE_[A-Z_]*|DATABASE_URL|LOG_FILE|LOG_LEVEL|HAPI_[A-Z_]*|TELEGRAM_[A-Z_]*|SECRET_KEY|TIME_ZONE)=' | tr -d = | paste -sd' ' -) || true
  [ -z "$ignored" ] || say "NOTE: ignoring $ignored from this shell: the services read .env only; put settings there"
fi
# Staging writes nothing outside ROOT: a throwaway secret (no key file), no folders made for the
# settings (REEVE_NO_PREPARE), and the metrics files a Python start opens in a scratch folder under ROOT.
scratch=
if [ -n "$ROOT" ]; then
  scratch=$(mktemp -d "$ROOT/.reeve-install-scratch.XXXXXX")
  service_env+=(SECRET_KEY=staging-only REEVE_NO_PREPARE=1 "PROMETHEUS_MULTIPROC_DIR=$scratch/metrics")
fi
paths=$(as_user "${service_env[@]}" "$VENV_PYTHON" manage.py doctor --paths) || {
  [ -z "$scratch" ] || rm -rf -- "$scratch"
  die "could not read Reeve's settings (manage.py doctor --paths failed): fix .env first"
}
[ -z "$scratch" ] || rm -rf -- "$scratch"
REEVE_DATA_DIR='' PULSE_DB_PATH='' LOG_FILE='' REEVE_DESK_PATH='' PULSE_API_URL=''
PULSE_SHUTDOWN_GRACE_SECONDS='' DATABASE_IS_SQLITE='' TELEGRAM_CONFIGURED='' HAPI_COMMAND='' CLAUDE_COMMAND_SETTING=''
while IFS= read -r line; do
  case "${line%%=*}" in
    REEVE_DATA_DIR | PULSE_DB_PATH | LOG_FILE | REEVE_DESK_PATH | PULSE_API_URL | \
      PULSE_SHUTDOWN_GRACE_SECONDS | DATABASE_IS_SQLITE | TELEGRAM_CONFIGURED | HAPI_COMMAND | \
      CLAUDE_COMMAND_SETTING) eval "$line" ;;
  esac
done <<<"$paths"

# The agent command as the units will run it: with the services' PATH and nothing else. A CLI that
# only this shell finds (an npm prefix, nvm) would fail every pulse.
on_service_path() { # command -> its path on SERVICE_PATH, or nothing
  case "$1" in
    */*) [ -x "$1" ] && echo "$1" ;;
    *) PATH=$SERVICE_PATH command -v "$1" 2>/dev/null ;;
  esac
}
agent_word=${HAPI_COMMAND%% *}
if [ -n "$agent_word" ] && ! on_service_path "$agent_word" >/dev/null; then
  found=$(command -v "$agent_word" 2>/dev/null || true)
  say "WARNING: the agent command '$agent_word' (HAPI_COMMAND) is not on the services' PATH ($SERVICE_PATH)${found:+; this shell finds it at $found: set HAPI_COMMAND=$found in .env}; every pulse would fail until it is"
fi
# The Claude Code CLI for the credential keep-alive (cron's PATH is the services'): CLAUDE_COMMAND if
# set, else claude on the services' PATH, else the one this shell finds.
CLAUDE_COMMAND=${CLAUDE_COMMAND_SETTING:-${CLAUDE_COMMAND:-}}
if [ -z "$CLAUDE_COMMAND" ]; then
  CLAUDE_COMMAND=$(on_service_path claude || command -v claude 2>/dev/null || true)
fi
if [ -n "$CLAUDE_COMMAND" ] && ! on_service_path "$CLAUDE_COMMAND" >/dev/null; then
  say "WARNING: CLAUDE_COMMAND '$CLAUDE_COMMAND' is not an executable the cron jobs can run: the credential keep-alive cannot refresh Claude Code's login"
fi
LOG_DIR=$(dirname "${LOG_FILE:-$REEVE_DATA_DIR/logs/daemon.log}")
BACKUP_DIR=$REEVE_DATA_DIR/backups

# A stop lets running pulses drain for the grace period; systemd waits that long plus a margin for
# the agents' SIGTERM->SIGKILL (3 s), their release and the reaper before it SIGKILLs anything.
grace=${PULSE_SHUTDOWN_GRACE_SECONDS%.*}
WORKER_STOP_TIMEOUT=$((${grace:-30} + 60))

unique_paths() { printf '%s\n' "$@" | awk 'NF && !seen[$0]++' | paste -sd' ' -; }
rw_common=("$REEVE_DATA_DIR" "$LOG_DIR")
[ -n "$PULSE_DB_PATH" ] && rw_common+=("$(dirname "$PULSE_DB_PATH")")
RW_WEB=$(unique_paths "${rw_common[@]}")
# The listener saves files sent in Telegram into the Desk's inbox/telegram.
RW_TELEGRAM=$(unique_paths "${rw_common[@]}" "$REEVE_DESK_PATH")
RW_WORKER=$(unique_paths "${rw_common[@]}" "$REEVE_DESK_PATH" "-$RUN_HOME/.claude" "-$RUN_HOME/.claude.json" \
  "-$RUN_HOME/.hapi" "-$RUN_HOME/.cache" "-$RUN_HOME/.config" "-$RUN_HOME/.local/share" "-$RUN_HOME/.local/state")
# --- rendering ----------------------------------------------------------------------------------
CHANGED=()
UNITS_CHANGED=0

render() { # template -> stdout, every @NAME@ replaced (quoted replacement: no & surprises)
  local text
  text=$(cat "$1")
  text=${text//@USER@/"$RUN_USER"}
  text=${text//@GROUP@/"$RUN_GROUP"}
  text=${text//@HOME@/"$RUN_HOME"}
  text=${text//@REEVE_DIR@/"$REEVE_DIR"}
  text=${text//@UV@/"$UV_BIN"}
  text=${text//@VENV_PYTHON@/"$VENV_PYTHON"}
  text=${text//@PYTHON3@/"$PYTHON3"}
  text=${text//@PATH@/"$SERVICE_PATH"}
  text=${text//@RW_WEB@/"$RW_WEB"}
  text=${text//@RW_TELEGRAM@/"$RW_TELEGRAM"}
  text=${text//@RW_WORKER@/"$RW_WORKER"}
  text=${text//@GRACE@/"${PULSE_SHUTDOWN_GRACE_SECONDS:-30}"}
  text=${text//@WORKER_STOP_TIMEOUT@/"$WORKER_STOP_TIMEOUT"}
  text=${text//@LOG_DIR@/"$LOG_DIR"}
  printf '%s\n' "$text"
}

# put MODE DEST < content: write DEST (under ROOT) only if its content or mode differs.
put() {
  local mode=$1 dest=$ROOT$2 tmp
  mkdir -p "$(dirname "$dest")"
  tmp=$(mktemp "$(dirname "$dest")/.reeve-install.XXXXXX")
  cat >"$tmp"
  chmod "$mode" "$tmp"
  if [ -f "$dest" ] && cmp -s "$tmp" "$dest" && [ "$(stat -c %a "$dest")" = "${mode#0}" ]; then
    rm -f "$tmp"
    return 0
  fi
  mv -f "$tmp" "$dest"
  CHANGED+=("$2")
  case "$2" in /etc/systemd/system/*) UNITS_CHANGED=1 ;; esac
}

q() { printf '%q' "$1"; }

# The helpers' settings.
put 0644 /etc/reeve/reeve.conf <<EOF
# Written by $REEVE_DIR/deploy/scripts/install.sh; read by the reeve-* helper scripts.
REEVE_DIR=$(q "$REEVE_DIR")
REEVE_USER=$(q "$RUN_USER")
REEVE_USER_HOME=$(q "$RUN_HOME")
REEVE_UV=$(q "$UV_BIN")
REEVE_DATA_DIR=$(q "$REEVE_DATA_DIR")
REEVE_DB_PATH=$(q "$PULSE_DB_PATH")
REEVE_DB_IS_SQLITE=$(q "$DATABASE_IS_SQLITE")
REEVE_LOG_FILE=$(q "$LOG_FILE")
REEVE_BACKUP_DIR=$(q "$BACKUP_DIR")
REEVE_API_URL=$(q "$PULSE_API_URL")
# The services' PATH (cron's too); the helpers run manage.py with it and nothing else of the caller's environment.
REEVE_SERVICE_PATH=$(q "$SERVICE_PATH")
# The Claude Code CLI the credential keep-alive runs (CLAUDE_COMMAND; empty: claude on that PATH).
REEVE_CLAUDE_COMMAND=$(q "$CLAUDE_COMMAND")
REEVE_KEEP_ENV=$KEEP_ENV
EOF

for unit in reeve-web reeve-worker reeve-telegram reeve-daemon; do
  put 0644 "/etc/systemd/system/$unit.service" < <(render "$DEPLOY/systemd/$unit.service.in")
done
# shellcheck disable=SC2094 # put writes under ROOT, never the file it reads
for script in "$DEPLOY"/bin/reeve-*; do
  put 0755 "/usr/local/bin/$(basename "$script")" <"$script"
done
put 0644 /usr/local/lib/reeve/common.sh <"$DEPLOY/lib/common.sh"
put 0755 /usr/local/lib/reeve/journal-relay <"$DEPLOY/lib/journal-relay"
# shellcheck disable=SC2094
for provider in "$DEPLOY"/credential-providers/*; do
  put 0755 "/usr/local/lib/reeve/credential-providers/$(basename "$provider")" <"$provider"
done
put 0644 /etc/logrotate.d/reeve < <(render "$DEPLOY/logrotate/reeve.in")
put 0644 /etc/cron.d/reeve < <(render "$DEPLOY/cron/reeve.in")

# The sudoers allowlist: the guide's commands, for its units and the two that make up reeve-daemon.
# Every argument is spelled out (no `*`, which would also match extra options such as --cursor-file).
sudoers() {
  local units=(reeve-daemon reeve-telegram reeve-web reeve-worker) verbs=(status start stop restart is-active show)
  local sys=() jnl=() unit verb digits
  for unit in "${units[@]}"; do
    for verb in "${verbs[@]}"; do sys+=("$SYSTEMCTL $verb $unit"); done
    for opts in "" " -f" " -b" " -xe" " -p err" " --since today"; do jnl+=("$JOURNALCTL -u $unit$opts"); done
    for digits in "[0-9]" "[0-9][0-9]" "[0-9][0-9][0-9]" "[0-9][0-9][0-9][0-9]"; do
      jnl+=("$JOURNALCTL -u $unit -n $digits" "$JOURNALCTL -u $unit -n $digits -f")
    done
  done
  sys+=("$SYSTEMCTL start reeve-daemon reeve-telegram" "$SYSTEMCTL stop reeve-telegram reeve-daemon"
    "$SYSTEMCTL restart reeve-daemon reeve-telegram")
  echo "# Reeve: passwordless management of its own services for $RUN_USER (installed by install.sh)."
  echo "# The services run as $RUN_USER, so these commands grant no privilege beyond them."
  printf 'Cmnd_Alias REEVE_SYSTEMCTL = '
  local IFS=,
  printf '%s' "${sys[*]}" | sed 's/,/, \\\n    /g'
  printf '\nCmnd_Alias REEVE_JOURNAL = '
  printf '%s' "${jnl[*]}" | sed 's/,/, \\\n    /g'
  printf '\n%s ALL=(root) NOPASSWD: REEVE_SYSTEMCTL, REEVE_JOURNAL\n' "$RUN_USER"
}
# The agent's sandbox (AGENT_SANDBOX=auto, pulses/agent/sandbox.py): without bubblewrap the agent runs
# uncontained, as this user, able to read .env and the database with its shell (SECURITY.md).
if ! command -v bwrap >/dev/null 2>&1; then
  say "WARNING: bubblewrap (bwrap) is not installed: the agent would run uncontained; install it first (sudo apt-get install bubblewrap), then ./reeve doctor says 'containment bubblewrap'"
fi
VISUDO=$(command -v visudo || true)
[ -n "$VISUDO" ] || die "visudo not found: install the sudo package (apt-get install sudo)"
sudoers_tmp=$(mktemp)
trap 'rm -f "$sudoers_tmp"' EXIT
sudoers >"$sudoers_tmp"
"$VISUDO" -cqf "$sudoers_tmp" || die "the generated sudoers file does not pass visudo -c; nothing installed for sudo"
put 0440 /etc/sudoers.d/reeve <"$sudoers_tmp"

# Data directories (the user's own, under ROOT when staging).
for dir in "$REEVE_DATA_DIR" "$LOG_DIR" "$BACKUP_DIR"; do
  if [ ! -d "$ROOT$dir" ]; then
    mkdir -p "$ROOT$dir"
    chmod 0700 "$ROOT$dir"
    [ -n "$ROOT" ] || chown "$RUN_USER:$RUN_GROUP" "$ROOT$dir"
    CHANGED+=("$dir/")
  fi
done
# The marker that lets `uninstall.sh --purge` tell Reeve's data directory from any other.
marker=$REEVE_DATA_DIR/.reeve-data-dir
if [ ! -f "$ROOT$marker" ]; then
  echo "Reeve's data directory: uninstall.sh --purge deletes this directory." >"$ROOT$marker"
  chmod 0600 "$ROOT$marker"
  [ -n "$ROOT" ] || chown "$RUN_USER:$RUN_GROUP" "$ROOT$marker"
  CHANGED+=("$marker")
fi

if [ "${#CHANGED[@]}" -eq 0 ]; then
  say "everything already up to date under ${ROOT:-/}"
else
  printf 'install.sh: wrote %s\n' "${CHANGED[@]}"
fi

if [ -n "$ROOT" ]; then
  say "staged under $ROOT for $RUN_USER (nothing on the system was touched)"
  exit 0
fi

# --- the live system ----------------------------------------------------------------------------
if crontab -l -u "$RUN_USER" 2>/dev/null | grep -q 'reeve-\(heartbeat\|backup\|health-check\|credential-keepalive\)'; then
  say "NOTE: $RUN_USER's own crontab still runs reeve-* jobs; /etc/cron.d/reeve runs them now: remove those lines (crontab -e)"
fi
if [ ! -d /run/systemd/system ]; then
  say "systemd is not running here: files installed, services not started"
  exit 0
fi
"$SYSTEMCTL" daemon-reload
as_user "${service_env[@]}" "$VENV_PYTHON" manage.py migrate --noinput
enable=(reeve-daemon.service reeve-web.service reeve-worker.service)
if [ "$TELEGRAM_CONFIGURED" = 1 ]; then
  enable+=(reeve-telegram.service)
else
  say "TELEGRAM_BOT_TOKEN is not set: reeve-telegram installed but not enabled (set it, then: sudo systemctl enable --now reeve-telegram)"
fi
"$SYSTEMCTL" enable --quiet "${enable[@]}"
[ "$START" -eq 1 ] || { say "installed; not started (--no-start)"; exit 0; }
if [ "$UNITS_CHANGED" -eq 1 ]; then
  "$SYSTEMCTL" restart "${enable[@]}"
else
  "$SYSTEMCTL" start "${enable[@]}"
fi
for _ in $(seq 1 30); do
  if curl --silent --fail --max-time 2 "$PULSE_API_URL/api/health" >/dev/null 2>&1 ||
    "$PYTHON3" -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=2)" \
      "$PULSE_API_URL/api/health" >/dev/null 2>&1; then
    say "Reeve is running: $PULSE_API_URL/api/health is healthy. Try: reeve-status"
    exit 0
  fi
  sleep 1
done
die "$PULSE_API_URL/api/health did not answer within 30 s: see reeve-logs web and reeve-status"

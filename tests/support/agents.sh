#!/usr/bin/env bash
# Installs the real agent programs that tests/agent/test_real_agents.py drives: Hapi and Claude Code from
# npm, at pinned versions, into .cache/agents (ignored by git; REEVE_AGENTS_DIR names another folder).
# tests/run.sh runs it before pytest.
# Prints one line for run.sh's NOTEs and exits 1 when npm is missing or the install fails: those
# tests then skip, saying why. Nothing is installed twice: a stamp records what is there.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1 # the project root: the tests look in its .cache/agents
dir=${REEVE_AGENTS_DIR:-.cache/agents}
packages="@anthropic-ai/claude-code@2.1.337 @twsxtd/hapi@0.30.7"

if [ -x "$dir/node_modules/.bin/hapi" ] && [ -x "$dir/node_modules/.bin/claude" ] &&
  [ "$(cat "$dir/installed" 2>/dev/null)" = "$packages" ]; then
  exit 0
fi
if ! command -v npm >/dev/null; then
  echo "the real Hapi and Claude Code tests did NOT run: npm is missing (Debian/Ubuntu: sudo apt-get install npm)"
  exit 1
fi
mkdir -p "$dir"
echo "== installing $packages into $dir" >&2
# shellcheck disable=SC2086 # the package list is meant to split into words
if ! npm install --prefix "$dir" --no-audit --no-fund --no-save --loglevel=error $packages >"$dir/install.log" 2>&1; then
  tail -5 "$dir/install.log" >&2
  echo "the real Hapi and Claude Code tests did NOT run: npm install failed (see $dir/install.log)"
  exit 1
fi
echo "$packages" >"$dir/installed"

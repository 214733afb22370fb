#!/usr/bin/env bash
# The whole test suite, as `./reeve test` and CI run it (inside the project's uv environment):
# pytest twice, side by side: on a throwaway PostgreSQL cluster started from the installed server
# binaries (tests/support/pg_cluster.sh), and on SQLite, after ruff and the migration check.
# Each half ends with its 15 slowest tests. Tests marked database_independent (no test database, no
# Reeve home: fresh clones, the executor) run in the SQLite half only (tests/conftest.py).
# Extra arguments go to pytest, e.g. ./reeve test -k worker -x
# REEVE_TEST_DATABASES=sqlite (or postgres) runs one half only.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
export DJANGO_SETTINGS_MODULE=reeve_site.settings_test
unset DATABASE_URL REEVE_TEST_POSTGRES_HALF_ALONGSIDE
# The suite starts some two thousand Python processes (Reeve's commands, gunicorn, the MCP server, the
# fake agent). Each compiles every module it imports from source unless the bytecode is cached, and
# PYTHONDONTWRITEBYTECODE (set in many container images, this machine's shell among them) forbids that cache: with it
# the suite spent about twice the CPU time. Python writes the cache into __pycache__ (ignored by git).
unset PYTHONDONTWRITEBYTECODE
databases=${REEVE_TEST_DATABASES:-sqlite postgres}
# pytest-xdist processes per half (a file's tests stay in one process, see tests/conftest.py). Most of
# a process-level test is waiting for the processes it started: on 2 cores, 3 + 3 finished the suite
# in 14.1 min where 2 + 2 took 15.5 (the same CPU time; docs/performance.md).
workers=${REEVE_TEST_WORKERS:-3}
status=0
notes=()

step() {
  echo "== $*"
  "$@" || status=1
}

# Each half runs pytest under its own label; "no tests ran" (exit 5) means the suite is broken.
# Its exit code lands in $dir/$label.rc so the two halves can run side by side.
run_pytest() {
  local label=$1 rcfile=$2 rc
  shift 2
  echo "== pytest on $label"
  python -m pytest -n "$workers" --dist loadgroup --no-loadscope-reorder --durations=15 "$@"
  rc=$?
  if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests on $label: the suite is broken" >&2
  fi
  echo "$rc" >"$rcfile"
}

mkdir -p test-output
work=$(mktemp -d)
pgdir=$work/pg
trap 'bash tests/support/pg_cluster.sh stop "$pgdir" 2>/dev/null; rm -rf "$work"' EXIT

# The PostgreSQL half runs in the background while the SQLite half runs in the foreground: most
# of a process-level test is waiting for another process, so two halves on two cores take little
# longer than the slower one. Its output is shown whole once the SQLite half is done.
pg_pid=
case " $databases " in
  *" postgres "*)
    if url=$(bash tests/support/pg_cluster.sh start "$pgdir" 2>"$work/start.err"); then
      DATABASE_URL=$url run_pytest "PostgreSQL ($url)" "$work/pg.rc" "$@" >"$work/pg.out" 2>&1 &
      pg_pid=$!
    elif grep -q "no PostgreSQL server binaries" "$work/start.err"; then
      notes+=("the PostgreSQL half of the suite did NOT run: no PostgreSQL server binaries (initdb, pg_ctl)")
      notes+=("  install them (Debian/Ubuntu: sudo apt-get install postgresql) and run ./reeve test again")
    else
      cat "$work/start.err" "$pgdir"/*.log >&2 2>/dev/null
      echo "the throwaway PostgreSQL cluster did not start" >&2
      status=1
    fi
    ;;
esac

# While it starts: the linters, the migration check, the docs and the real agents' install (npm, mostly
# waiting on the network), which only the SQLite half uses.
step ruff check .
step ruff format --check .
step python manage.py makemigrations --check --dry-run
# The documentation site (mkdocs.yml), warnings as errors: a broken link or anchor, a page left out of
# the nav, a generated page that cannot be made (docs/hooks/) fails the run. A few seconds; into site/.
NO_MKDOCS_2_WARNING=1 step python -m mkdocs build --strict --quiet
# The real Hapi and Claude Code (tests/agent/test_real_agents.py); without npm those tests skip.
if ! agents_note=$(bash tests/support/agents.sh); then
  notes+=("$agents_note")
fi

case " $databases " in
  *" sqlite "*)
    # The PostgreSQL tests that start a cluster of their own on SQLite (backups) run once, over there.
    [ -z "$pg_pid" ] || export REEVE_TEST_POSTGRES_HALF_ALONGSIDE=1
    run_pytest SQLite "$work/sqlite.rc" "$@"
    [ "$(cat "$work/sqlite.rc")" -eq 0 ] || status=1
    ;;
esac

if [ -n "$pg_pid" ]; then
  wait "$pg_pid"
  cat "$work/pg.out"
  [ "$(cat "$work/pg.rc" 2>/dev/null || echo 1)" -eq 0 ] || status=1
fi

for note in "${notes[@]}"; do echo "NOTE: $note"; done
if [ "$status" -ne 0 ]; then
  echo "reeve test: FAILED"
else
  echo "reeve test: all checks passed"
fi
exit "$status"

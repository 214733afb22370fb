#!/usr/bin/env bash
# The whole test suite, as `./reeve test` and CI run it (inside the project's uv environment):
# ruff, the migration check, then pytest twice: on SQLite, and on a throwaway PostgreSQL cluster
# started from the installed server binaries (tests/pg_cluster.sh).
# Extra arguments go to pytest, e.g. ./reeve test -k worker -x
# REEVE_TEST_DATABASES=sqlite (or postgres) runs one half only.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
export DJANGO_SETTINGS_MODULE=reeve_site.settings_test
unset DATABASE_URL
databases=${REEVE_TEST_DATABASES:-sqlite postgres}
status=0
notes=()

step() {
  echo "== $*"
  "$@" || status=1
}

run_pytest() {
  local label=$1 rc
  shift
  echo "== pytest on $label"
  python -m pytest "$@"
  rc=$?
  if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests on $label: the suite is broken" >&2
    status=1
  elif [ "$rc" -ne 0 ]; then
    status=1
  fi
}

step ruff check .
step ruff format --check .
step python manage.py makemigrations --check --dry-run
mkdir -p test-output

case " $databases " in *" sqlite "*) run_pytest SQLite "$@" ;; esac

case " $databases " in
  *" postgres "*)
    pgdir=$(mktemp -d)
    trap 'bash tests/pg_cluster.sh stop "$pgdir/pg"; rm -rf "$pgdir"' EXIT
    if url=$(bash tests/pg_cluster.sh start "$pgdir/pg" 2>"$pgdir/start.err"); then
      DATABASE_URL=$url run_pytest "PostgreSQL ($url)" "$@"
    elif grep -q "no PostgreSQL server binaries" "$pgdir/start.err"; then
      notes+=("the PostgreSQL half of the suite did NOT run: no PostgreSQL server binaries (initdb, pg_ctl)")
      notes+=("  install them (Debian/Ubuntu: sudo apt-get install postgresql) and run ./reeve test again")
    else
      cat "$pgdir/start.err" "$pgdir"/pg/*.log >&2 2>/dev/null
      echo "the throwaway PostgreSQL cluster did not start" >&2
      status=1
    fi
    ;;
esac

for note in "${notes[@]}"; do echo "NOTE: $note"; done
if [ "$status" -ne 0 ]; then
  echo "reeve test: FAILED"
else
  echo "reeve test: all checks passed"
fi
exit "$status"

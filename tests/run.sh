#!/usr/bin/env bash
# The whole test suite, as `./reeve test` and CI run it (inside the project's uv environment).
# Extra arguments go to pytest, e.g. ./reeve test -k worker -x
set -uo pipefail
cd "$(dirname "$0")/.."
export DJANGO_SETTINGS_MODULE=reeve_site.settings_test
status=0
notes=()

step() {
  echo "== $*"
  "$@" || status=1
}

step ruff check .
step ruff format --check .
step python manage.py makemigrations --check --dry-run

echo "== pytest"
mkdir -p test-output
python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: the suite is broken" >&2
  status=1
elif [ "$rc" -ne 0 ]; then
  status=1
fi

if [ -f test-output/skipped-halves.txt ]; then
  while IFS= read -r line; do notes+=("$line"); done < test-output/skipped-halves.txt
fi
for note in "${notes[@]}"; do echo "NOTE: $note"; done
if [ "$status" -ne 0 ]; then
  echo "reeve test: FAILED"
else
  echo "reeve test: all checks passed"
fi
exit "$status"

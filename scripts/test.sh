#!/bin/sh
# The test command of the README and of .ci/run: set up .venv, then run the whole test suite.
set -e
cd "$(dirname "$0")/.."
sh scripts/setup_env.sh
set +e
.venv/bin/python -m pytest -q -p no:cacheprovider tests "$@"
rc=$?
# pytest exits 5 when it collected no tests; that is not a failure of the code under test.
if [ "$rc" -eq 5 ]; then rc=0; fi
exit "$rc"

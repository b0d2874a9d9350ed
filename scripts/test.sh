#!/usr/bin/env bash
# Set up everything on a fresh machine, then run the linter and the whole test suite.
# Extra arguments go to pytest (e.g. bash scripts/test.sh -k broker).
set -euo pipefail
source "$(dirname "$0")/_venv.sh" test
cd "$ROOT"

# The across-hosts test runs nodes in network namespaces; it needs iproute2 (and root).
if ! command -v ip >/dev/null && [ "$(id -u)" = 0 ]; then
    _apt_install iproute2 || true
fi

# The browser check (tests/e2e/test_browser_recall.py) compares extraction with what
# headless Chromium loads; it fails, not skips, without Chromium.
if ! command -v chromium >/dev/null; then
    _apt_install --no-install-recommends chromium || true
fi

# The shared-crawl tests (tests/shared, tests/e2e/test_shared_crawl.py) run real
# redis-server processes, one alone and three as a cluster; they fail without it.
if ! command -v redis-server >/dev/null; then
    _apt_install --no-install-recommends redis-server || true
fi

"$ROOT/.venv/bin/ruff" check crawler tests
"$ROOT/.venv/bin/ruff" format --check crawler tests
"$PY" -m pytest "$@"

# The unit tests again on the lowest versions pyproject.toml allows (its floors), in a
# venv of their own, so that a floor the code has outgrown fails here. Only on a whole
# run (no pytest arguments), or with CRAWLERTEST_FLOORS=1; CRAWLERTEST_FLOORS=0 skips it
# (not a CRAWLER_ variable: the config refuses the ones it does not know).
if [ "${CRAWLERTEST_FLOORS:-$([ $# -eq 0 ] && echo 1 || echo 0)}" = 1 ]; then
    FLOORS="$ROOT/.venv-floors"
    PINS="$("$PY" "$ROOT/scripts/lowest_versions.py" "$ROOT/pyproject.toml")"
    STAMP="$FLOORS/.installed"
    if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$PINS" ]; then
        _log "installing the lowest allowed versions into .venv-floors: $(echo $PINS)"
        rm -rf "$FLOORS"
        "$PY" -m venv "$FLOORS"
        # shellcheck disable=SC2086
        if ! { "$FLOORS/bin/pip" install -q --disable-pip-version-check $PINS &&
            "$FLOORS/bin/pip" install -q --disable-pip-version-check --no-deps -e "$ROOT"; } \
            >"$FLOORS/pip.log" 2>&1; then
            cat "$FLOORS/pip.log" >&2
            _log "installing the lowest allowed versions failed (log above)"
            exit 1
        fi
        echo "$PINS" > "$STAMP"
    fi
    _log "unit tests on the lowest allowed versions"
    "$FLOORS/bin/python" -m pytest tests --ignore=tests/e2e -q -p no:cacheprovider
fi

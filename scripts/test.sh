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

"$ROOT/.venv/bin/ruff" check crawler tests
"$ROOT/.venv/bin/ruff" format --check crawler tests
"$PY" -m pytest "$@"

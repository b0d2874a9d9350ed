#!/usr/bin/env bash
# Recall and precision of our image extraction against what headless Chromium loads, on
# the fixture site in tests/browser_site/ (served on 127.0.0.1 only). Installs Chromium
# when it is missing (needs root and apt-get). Takes about a minute. Recall and
# precision are given for --render never, auto and always side by side (or one mode).
# Arguments go to the check: bash scripts/browser_check.sh [--json FILE] [--keep DIR]
#   [--render never|auto|always|all]
set -euo pipefail
source "$(dirname "$0")/_venv.sh" ""  # "": no extras (not this script's arguments)
cd "$ROOT"

if ! command -v chromium >/dev/null; then
    _apt_install --no-install-recommends chromium || {
        _log "the browser check needs Chromium: apt-get install chromium"
        exit 1
    }
fi
exec "$PY" -m tests.browser_site.check "$@"

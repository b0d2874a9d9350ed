# Sourced by demo.sh and test.sh: make .venv with Python 3.11+ and the project installed.
# Installs what a fresh Debian machine lacks (python3, python3-venv) when run as root.
# Usage: source scripts/_venv.sh [EXTRAS]   -> sets ROOT and PY (the venv's python)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXTRAS="${1:-}"

_log() { echo "[setup] $*" >&2; }

_apt_install() {
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        _log "installing $* with apt-get"
        apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    else
        _log "please install: $* (needs root and apt-get)"
        return 1
    fi
}

_find_python() {
    local candidate
    for candidate in python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

if [ ! -x "$ROOT/.venv/bin/python" ]; then
    BASE_PY="$(_find_python)" || { _apt_install python3 python3-venv && BASE_PY="$(_find_python)"; } || {
        _log "Python 3.11 or newer is required"; exit 1; }
    _log "creating .venv with $BASE_PY"
    if ! "$BASE_PY" -m venv "$ROOT/.venv" 2>/dev/null; then
        rm -rf "$ROOT/.venv"
        _apt_install python3-venv "python$("$BASE_PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')-venv" ||
            _apt_install python3-venv
        "$BASE_PY" -m venv "$ROOT/.venv"
    fi
fi
PY="$ROOT/.venv/bin/python"

# Reinstall only when pyproject.toml or the extras changed.
STAMP="$ROOT/.venv/.installed-${EXTRAS:-base}"
WANT="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    _log "installing the project${EXTRAS:+ with [$EXTRAS]} into .venv"
    # pip and the build backend chatter on stderr; keep it in a log, show it on failure.
    if ! { "$PY" -m pip install -q --disable-pip-version-check --upgrade pip &&
        "$PY" -m pip install -q --disable-pip-version-check -e "$ROOT${EXTRAS:+[$EXTRAS]}"; } \
        >"$ROOT/.venv/pip.log" 2>&1; then
        cat "$ROOT/.venv/pip.log" >&2
        _log "installing failed (log above, also in .venv/pip.log)"
        exit 1
    fi
    echo "$WANT" > "$STAMP"
fi

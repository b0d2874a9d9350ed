#!/usr/bin/env bash
# Throughput benchmark (issue #8): our crawler against Scrapy, a gevent + BeautifulSoup
# crawler, img2dataset and a plain gevent list downloader, on generated sites served by a
# private nginx on 127.0.0.1, at 0 and 50 ms of added latency. Three sites (--sites):
#   images  200 small pages, 10,000 images; latency on image responses only; every tool
#   small   5,001 pages of 3-5 KB, 10,000 images; latency on every response; the crawlers only
#   heavy   3,001 pages of 30-150 KB, 6,000 images; likewise (ours, scrapy, gevent-crawl)
# Not part of the test suite: figures vary by machine. Prints one table per site and
# writes them all as JSON (--json FILE, default ./bench-results.json). Logs and outputs
# of each run stay under build/bench/runs/<site>/<tool>-<latency>ms/runN/.
#
#   bash scripts/bench.sh                              # all three sites
#   bash scripts/bench.sh --sites heavy --latency 0    # one site, one latency
#   bash scripts/bench.sh --sites heavy --pages 300 --images 600   # a quick run
#   bash scripts/bench.sh --sites images --images 1000 --pages 40 --latency 0
#   bash scripts/bench.sh --tools ours,gevent-crawl --latency 50 --profile
#   bash scripts/bench.sh --help                       # every option
#
# --pages, --images, --page-kb and --tools, when given, apply to every site chosen.
#
# Installs what it lacks: nginx and its echo module (apt, as root), the project's .venv
# (scripts/_venv.sh) and a separate .bench-venv with the baselines, so that Scrapy,
# img2dataset and their dependencies never land in the project's environment.
set -euo pipefail
# An explicit "" (no extras): a bare `source` would hand _venv.sh our own arguments.
source "$(dirname "$0")/_venv.sh" ""

BENCH_VENV="$ROOT/.bench-venv"
BENCH_PACKAGES=(scrapy img2dataset gevent requests beautifulsoup4 lxml psutil py-spy)

if [ ! -x /usr/sbin/nginx ] || [ ! -f /usr/lib/nginx/modules/ngx_http_echo_module.so ]; then
    # Only the binary and the module are used: the benchmark runs its own instances with
    # their own config. Installing the package would also start the system service on
    # port 80; a temporary policy-rc.d (Debian's switch for that) keeps it stopped.
    if [ "$(id -u)" = 0 ] && [ ! -e /usr/sbin/policy-rc.d ]; then
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        _apt_install nginx libnginx-mod-http-echo
        rm -f /usr/sbin/policy-rc.d
        trap - EXIT
    else
        _apt_install nginx libnginx-mod-http-echo
    fi
fi

# Reinstall the baselines only when this list changes.
STAMP="$BENCH_VENV/.installed"
WANT="${BENCH_PACKAGES[*]}"
if [ ! -x "$BENCH_VENV/bin/python" ] || [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    _log "creating .bench-venv with ${BENCH_PACKAGES[*]}"
    BASE_PY="$("$PY" -c 'import sys; print(sys._base_executable)')"
    "$BASE_PY" -m venv "$BENCH_VENV"
    if ! "$BENCH_VENV/bin/python" -m pip install -q --disable-pip-version-check \
        "${BENCH_PACKAGES[@]}" >"$BENCH_VENV/pip.log" 2>&1; then
        cat "$BENCH_VENV/pip.log" >&2
        _log "installing the baselines failed (log above, also in .bench-venv/pip.log)"
        exit 1
    fi
    echo "$WANT" >"$STAMP"
fi

# Bytecode for the crawler, as pip writes it for an installed package (the baselines
# have theirs from pip): with PYTHONDONTWRITEBYTECODE set, an editable install would
# compile every module again in every process of every run.
"$PY" -m compileall -q "$ROOT/crawler" >/dev/null

# The driver owns every process it starts (nginx, the tools, py-spy) and kills their
# whole trees when it ends, on Ctrl-C or SIGTERM too; exec hands it our signals.
export PYTHONPATH="$ROOT/scripts${PYTHONPATH:+:$PYTHONPATH}"
exec "$BENCH_VENV/bin/python" -m bench --project-bin "$ROOT/.venv/bin" "$@"

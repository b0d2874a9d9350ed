#!/usr/bin/env bash
# The whole product on this machine, no internet: a generated demo site served on
# 127.0.0.1, a harvester node and two downloader nodes talking over TCP, live progress,
# a summary, and the images plus manifest.jsonl left under downloads/demo/.
set -euo pipefail
source "$(dirname "$0")/_venv.sh"
cd "$ROOT"
CRAWLER="$ROOT/.venv/bin/crawler"

WORK="$ROOT/build/demo"       # the demo site and the demo's key (git-ignored)
OUT="$ROOT/downloads/demo"     # owned by the demo: emptied at each run
rm -rf "$WORK" "$OUT"
mkdir -p "$WORK" "$OUT"

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

"$PY" -m crawler.demo.site generate "$WORK/site" --pages 30 --images 300
"$PY" -m crawler.demo.site serve "$WORK/site" --port-file "$WORK/site.port" >/dev/null &
pids+=($!)
for _ in $(seq 100); do [ -s "$WORK/site.port" ] && break; sleep 0.1; done
SITE="http://127.0.0.1:$(cat "$WORK/site.port")/"
echo "demo site: $SITE"

# A fresh random key for this run, readable by this user only; never printed.
"$CRAWLER" keygen "$WORK/authkey" >/dev/null
free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
LISTEN="127.0.0.1:$(free_port)"
METRICS="127.0.0.1:$(free_port)"   # the harvester's Prometheus endpoint

started=$(date +%s.%N)
for node in 1 2; do
    CRAWLER_NODE_ID="demo-node-$node" "$CRAWLER" download --config config/demo.toml \
        --connect "$LISTEN" --out "$OUT" --processes 1 --authkey-file "$WORK/authkey" \
        2>"$WORK/node-$node.log" &
    pids+=($!)
done
"$CRAWLER" harvest "$SITE" --config config/demo.toml --listen "$LISTEN" --out "$OUT" \
    --authkey-file "$WORK/authkey" --metrics "$METRICS" \
    >"$WORK/harvester.out" 2>"$WORK/harvester.log" &
harvester=$!
pids+=($harvester)

echo "progress (crawler tail $OUT/progress.log --only ...):"
timeout 110 "$CRAWLER" tail "$OUT/progress.log" --summary-every 1 \
    --only page_fetched,page_failed,node_joined,node_left,totals,crawl_finished || true

# The final figures, as Prometheus would scrape them (the harvester waits for one
# scrape after the crawl's end, metrics_linger at most).
echo
echo "metrics (http://$METRICS/metrics, some of them):"
"$PY" - "$METRICS" <<'SCRAPE' || true
import sys, urllib.request
with urllib.request.urlopen(f"http://{sys.argv[1]}/metrics", timeout=10) as response:
    text = response.read().decode()
shown = ("crawler_pages_", "crawler_images_", "crawler_stored_bytes", "crawler_tasks",
         "crawler_crawl_finished", "crawler_nodes_")
for line in text.splitlines():
    if line.startswith(shown):
        print("  " + line)
SCRAPE

status=0
wait "$harvester" || status=$?
for pid in "${pids[@]:1}"; do wait "$pid" 2>/dev/null || true; done
finished=$(date +%s.%N)
if [ "$status" != 0 ]; then
    echo "the harvester failed (exit $status):" >&2
    tail -20 "$WORK/harvester.log" >&2
    exit 1
fi

echo
echo "summary: $(cat "$WORK/harvester.out")"
cat "$WORK/node-1.log" "$WORK/node-2.log" | grep finished || true
"$PY" -m crawler.demo.site check "$WORK/site" "$SITE" "$OUT"
printf 'wall time of the crawl: %.1f s\n' "$(echo "$finished - $started" | bc -l 2>/dev/null || echo 0)"
echo "images and manifest: $OUT (manifest.jsonl, progress.log)"
"$CRAWLER" report "$OUT"
echo "open it in a browser: file://$(cd "$OUT" && pwd)/report.html"

#!/usr/bin/env bash
# The long soak, run by hand (not in CI): 1,000,000 small images by default, downloader
# nodes killed with -9 at random every few seconds, the harvester killed once and
# started again on its state. Prints tasks lost (must be 0), images fetched twice, the
# harvester's RSS over time and seconds per 10,000 images at the start, middle and end.
#   bash scripts/soak.sh [--images N] [--nodes K] [--concurrency C] [--kill-every S]
set -euo pipefail
source "$(dirname "$0")/_venv.sh" ""  # (no extras; not this script's arguments)
exec "$PY" "$ROOT/scripts/soak.py" "$@"

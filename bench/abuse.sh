#!/usr/bin/env bash
# The abuse scenarios against one backend, each on a fresh server with the DEFAULT
# [web.limits] (what a deployment has) and log filter `info`: raw output (JSON lines and
# tables) appended to bench/results/<date>-abuse-<backend>.log (or $OUT), JSON lines also to
# bench/results/abuse-<backend>.jsonl. Figures go to RELIABILITY.md.
#
#   bench/abuse.sh sqlite|mariadb|postgres
set -uo pipefail
cd "$(dirname "$0")/.."
backend="${1:?backend: sqlite, mariadb or postgres}"
out="${OUT:-bench/results/$(date +%F)-abuse-$backend.log}"
export LIMITS=default LOG_FILTER="${LOG_FILTER:-info}"
export RESULTS="${RESULTS:-bench/results/abuse-$backend.jsonl}"
mkdir -p bench/results
{
  echo "# abuse scenarios, backend $backend, $(date -u '+%F %T UTC'), commit $(git rev-parse --short HEAD)"
  echo "# $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg): timings taken on a busy machine (cores shared with other builds)"
  while read -r args; do
    [ -z "$args" ] && continue
    echo "## abuse $args"
    # shellcheck disable=SC2086
    bench/run.sh "$backend" abuse $args || echo "## exit status $?"
  done <<'CASES'
partial-frames --connections 20
flood --events 20000
flood --events 100000 --polling-posts 10
slow-admin
slowloris --connections 1000
amplification
CASES
} 2>&1 | tee -a "$out"

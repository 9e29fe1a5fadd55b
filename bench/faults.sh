#!/usr/bin/env bash
# The fault matrix against one backend: kill -9 and SIGTERM mid-load (every backend), and
# database connections cut / refused / stalled through the generator's proxy (MariaDB,
# PostgreSQL). Each run gets a database of its own, dropped afterwards; the generator starts,
# kills and restarts the server itself. Raw output appended to
# bench/results/<date>-faults-<backend>.log (or $OUT). Figures go to RELIABILITY.md.
#
#   bench/faults.sh sqlite|mariadb|postgres
#   KILL_RUNS=5 RUNS=3 (runs per case), CASES="kill9 sigterm cut refuse stall" (a subset)
set -uo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/config.sh
. bench/config.sh
backend="${1:?backend: sqlite, mariadb or postgres}"
out="${OUT:-bench/results/$(date +%F)-faults-$backend.log}"
kill_runs="${KILL_RUNS:-5}"
runs="${RUNS:-3}"
cases="${CASES:-kill9 sigterm cut refuse stall}"
case "$backend" in sqlite|mariadb|postgres) ;; *) echo "unknown backend $backend" >&2; exit 2 ;; esac
cargo build --release -q -p socketgram -p socketgram-bench || exit 1
bin="${CARGO_TARGET_DIR:-target}/release"
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
mkdir -p bench/results

# One run: a fresh database and configuration, then `socketgram-bench fault <args>`.
one() {
  local work name url
  work="$(mktemp -d)"
  name="sg_fault_$$_$RANDOM"
  case "$backend" in
    sqlite) url="sqlite://$work/chat.db" ;;
    mariadb) url="mysql://root@127.0.0.1:3306/$name" ;;
    postgres) url="postgres://postgres@127.0.0.1:5432/$name" ;;
  esac
  write_config "$work/socketgram.toml" "$url" "shutdown_timeout_secs = 10"
  if "$bin"/socketgram migrate -c "$work/socketgram.toml" > /dev/null; then
    local kind="$1" load; shift
    # kill -9 and SIGTERM: each visitor keeps its 8 sends in flight (as fast as answered);
    # database faults: 50 messages a second per visitor, the run being longer.
    if [ "$kind" = db ]; then set -- db --db-url "$url" "$@"; load="--rate 50"
    else set -- "$kind" "$@"; load="--rate 0"; fi
    # shellcheck disable=SC2086
    "$bin"/socketgram-bench --grpc-token bench-token --cid-base 1000 \
      --server-log "$work/server.log" \
      fault --server-bin "$bin/socketgram" --config "$work/socketgram.toml" $load "$@" \
      || echo "## exit status $?"
    echo "## server log: $(wc -l < "$work/server.log" 2>/dev/null || echo 0) lines; last warnings/errors:"
    grep -E 'WARN|ERROR' "$work/server.log" 2>/dev/null | tail -3 | cut -c1-300 | sed 's/^/##   /'
  else
    echo "## migrate failed"
  fi
  case "$backend" in
    mariadb) mysql -uroot -h127.0.0.1 -e "DROP DATABASE IF EXISTS $name" ;;
    postgres) psql -q -U postgres -h 127.0.0.1 -d postgres -c "DROP DATABASE IF EXISTS $name WITH (FORCE)" ;;
  esac
  rm -rf "$work"
}

{
  echo "# fault matrix, backend $backend, $(date -u '+%F %T UTC'), commit $(git rev-parse --short HEAD)"
  echo "# $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg): timings taken on a busy machine (cores shared with other builds)"
  for c in $cases; do
    case "$c" in
      kill9|sigterm) n="$runs"; [ "$c" = kill9 ] && n="$kill_runs"
        for i in $(seq 1 "$n"); do echo "## fault $c, run $i/$n"; one "$c"; done ;;
      cut|refuse|stall)
        [ "$backend" = sqlite ] && continue
        for i in $(seq 1 "$runs"); do echo "## fault db $c, run $i/$runs"; one db --fault "$c"; done ;;
    esac
  done
} 2>&1 | tee -a "$out"

#!/usr/bin/env bash
# Runs socketgram-bench scenarios against a release `socketgram serve` on one backend and
# appends the JSON lines to bench/results/<backend>.jsonl (or $RESULTS). Figures go to BENCHMARKS.md.
#
#   bench/run.sh sqlite|mariadb|postgres [scenario args...]
#   e.g. bench/run.sh sqlite throughput --messages 200000 --in-flight 2000
#
# Each call starts a fresh server on a fresh database, creates the admin `bench`, runs one
# scenario and stops the server. Uses the local MariaDB/PostgreSQL (root / postgres users).
# LIMITS=default: keep the server's default [web.limits] (what a deployment has: the abuse
# scenarios) instead of the raised ones.
# PROFILE=1: record the server with `perf record -g` (Debian's linux-perf) during the run and
# print its hottest symbols afterwards.
# BIN_DIR=dir: run the `socketgram` and `socketgram-bench` binaries in dir (e.g. a build copied
# aside, for before/after runs back to back) instead of building.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/config.sh
. bench/config.sh
backend="${1:?backend: sqlite, mariadb or postgres}"; shift
if [ -n "${BIN_DIR:-}" ]; then
  bin="$BIN_DIR"
else
  cargo build --release -q -p socketgram -p socketgram-bench
  bin="${CARGO_TARGET_DIR:-target}/release"
fi
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"

work="$(mktemp -d)"
name="sg_bench_$$_$RANDOM"
case "$backend" in
  sqlite) url="sqlite://$work/chat.db"; db_process="" ;;
  mariadb) url="mysql://root@127.0.0.1:3306/$name"; db_process="mariadbd" ;;
  postgres) url="postgres://postgres@127.0.0.1:5432/$name"; db_process="postgres" ;;
  *) echo "unknown backend $backend" >&2; exit 2 ;;
esac
write_config "$work/socketgram.toml" "$url"
"$bin"/socketgram migrate -c "$work/socketgram.toml"
admin_sql="INSERT INTO adm_account (aid, name, lid) VALUES ('bench', 'Bench', 2)"
case "$backend" in
  sqlite) python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(sys.argv[2]); c.commit()" "$work/chat.db" "$admin_sql" ;;
  mariadb) mysql -uroot -h127.0.0.1 "$name" -e "$admin_sql" ;;
  postgres) psql -q -U postgres -h 127.0.0.1 -d "$name" -c "$admin_sql" ;;
esac

# SEED_MESSAGES=N (SQLite): N stored messages over 10,000 other visitors first, to see how the
# per-message cost holds as history grows.
if [ -n "${SEED_MESSAGES:-}" ] && [ "$backend" = sqlite ]; then
  python3 - "$work/chat.db" "$SEED_MESSAGES" <<'PY'
import sqlite3, sys
db, n = sys.argv[1], int(sys.argv[2])
c = sqlite3.connect(db)
rows = ((1_000_000_000 + i % 10_000, '0', 1, '2026-01-01 00:00:00', 'seed %d' % i, 1, 0) for i in range(n))
c.executemany("INSERT INTO messages (cid, aid, direction, date, message, check_msg, check_msg_admin) VALUES (?,?,?,?,?,?,?)", rows)
c.execute("INSERT OR IGNORE INTO sg_conversations (cid, last_message_id) SELECT cid, MAX(id) FROM messages GROUP BY cid")
c.commit()
PY
fi
"$bin"/socketgram serve -c "$work/socketgram.toml" > "$work/ready" 2> "$work/server.log" &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true
  case "$backend" in
    mariadb) mysql -uroot -h127.0.0.1 -e "DROP DATABASE IF EXISTS $name" ;;
    postgres) psql -q -U postgres -h 127.0.0.1 -d postgres -c "DROP DATABASE IF EXISTS $name WITH (FORCE)" ;;
  esac
  [ -n "${KEEP_LOG:-}" ] && cp "$work/server.log" "$KEEP_LOG"
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 1 100); do grep -q listening "$work/ready" && break; sleep 0.1; done
web="$(grep -o 'web=[^ ]*' "$work/ready" | cut -d= -f2)"
grpc="$(grep -o 'grpc=[^ ]*' "$work/ready" | cut -d= -f2)"

if [ -n "${PROFILE:-}" ]; then
  perf record -F 499 -g -p "$server" -o "$work/perf.data" 2>/dev/null &
  perf_pid=$!
fi
mkdir -p bench/results
"$bin"/socketgram-bench --url "http://$web" --server-pid "$server" \
  ${db_process:+--db-process "$db_process"} --grpc-url "http://$grpc" --grpc-token bench-token \
  --server-log "$work/server.log" --cid-base 1000 "$@" | tee -a "${RESULTS:-bench/results/$backend.jsonl}"
if [ -n "${PROFILE:-}" ]; then
  kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true
  perf report -i "$work/perf.data" --no-children --sort dso,symbol --stdio 2>/dev/null \
    | grep -E '^ +[0-9]' | head -40
fi

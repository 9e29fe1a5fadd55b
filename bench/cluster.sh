#!/usr/bin/env bash
# Runs a socketgram-bench scenario against a scaled-out deployment on this machine: a
# nats-server of its own, 2 release `socketgram core` replicas on one fresh MariaDB database,
# 2 `socketgram edge-web` (edge A prefers core a, edge B core b). Visitors connect to edge A,
# admins to edge B, so every message crosses the replicas over NATS. Appends the JSON line to
# bench/results/cluster.jsonl (or $RESULTS).
#
#   bench/cluster.sh [scenario args...]          e.g. bench/cluster.sh throughput --in-flight 100
#   KILL_CORE_AFTER=S bench/cluster.sh ...       SIGKILL core a S seconds into the run and
#                                                report how long edge A's sends waited
#
# The server figures (CPU, RSS) are of edge A; `top`-style totals of every process are
# printed after the run.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/config.sh
. bench/config.sh
cargo build --release -q -p socketgram -p socketgram-bench
bin="${CARGO_TARGET_DIR:-target}/release"
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
nats_server="${NATS_SERVER:-/usr/sbin/nats-server}"

work="$(mktemp -d)"
name="sg_bench_cluster_$$_$RANDOM"
url="mysql://root@127.0.0.1:3306/$name"
nats_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  mysql -uroot -h127.0.0.1 -e "DROP DATABASE IF EXISTS $name"
  rm -rf "$work"
}
trap cleanup EXIT

"$nats_server" -a 127.0.0.1 -p "$nats_port" > "$work/nats.log" 2>&1 &
pids+=($!)
write_config "$work/core.toml" "$url"
cat >> "$work/core.toml" <<TOML
[core.cluster]
nats_url = "nats://127.0.0.1:$nats_port"
TOML
"$bin"/socketgram migrate -c "$work/core.toml"
mysql -uroot -h127.0.0.1 "$name" -e "INSERT INTO adm_account (aid, name, lid) VALUES ('bench', 'Bench', 2)"

# Starts `socketgram ARGS...` and prints its ready line's `key=ADDR` value.
start() {
  local log="$1" key="$2"; shift 2
  "$bin"/socketgram "$@" > "$work/$log.ready" 2> "$work/$log.log" &
  pids+=($!)
  echo $! > "$work/$log.pid"
  for _ in $(seq 1 100); do grep -q listening "$work/$log.ready" && break; sleep 0.1; done
  grep -o "$key=[^ ]*" "$work/$log.ready" | cut -d= -f2
}
core_a="$(SOCKETGRAM_CORE__CLUSTER__REPLICA=core-a start core-a grpc core -c "$work/core.toml")"
core_b="$(SOCKETGRAM_CORE__CLUSTER__REPLICA=core-b start core-b grpc core -c "$work/core.toml")"
write_config "$work/edge.toml" "$url"
printf '[edge]\ntoken = "bench-token"\n' >> "$work/edge.toml"
edge_a="$(start edge-a web edge-web -c "$work/edge.toml" --core "http://$core_a,http://$core_b")"
edge_b="$(start edge-b web edge-web -c "$work/edge.toml" --core "http://$core_b,http://$core_a")"

if [ -n "${KILL_CORE_AFTER:-}" ]; then
  (sleep "$KILL_CORE_AFTER"; kill -9 "$(cat "$work/core-a.pid")"; date +%s.%N > "$work/killed") &
fi
mkdir -p bench/results
"$bin"/socketgram-bench --url "http://$edge_a" --admin-url "http://$edge_b" \
  --server-pid "$(cat "$work/edge-a.pid")" --db-process mariadbd \
  --grpc-url "http://$core_b" --grpc-token bench-token --cid-base 1000 "$@" \
  | tee -a "${RESULTS:-bench/results/cluster.jsonl}"
for p in core-a core-b edge-a edge-b; do
  pid="$(cat "$work/$p.pid")"
  if [ -d "/proc/$pid" ]; then
    echo "$p: $(ps -o rss=,time= -p "$pid" | awk '{printf "RSS %.1f MB, CPU time %s", $1/1024, $2}')"
  else
    echo "$p: killed"
  fi
done
if [ -f "$work/killed" ]; then
  grep -h "moving to the next core\|edge session with the core open" "$work/edge-a.log" | tail -3 || true
fi

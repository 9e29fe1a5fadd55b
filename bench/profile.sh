#!/usr/bin/env bash
# Profiles a release `socketgram serve` (SQLite) with `perf record -g` while socketgram-bench
# runs a throughput scenario; prints the hottest symbols. Needs Debian's linux-perf.
#   bench/profile.sh [throughput options...]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p socketgram -p socketgram-bench
work="$(mktemp -d)"
cat > "$work/socketgram.toml" <<TOML
[core.database]
url = "sqlite://$work/chat.db"
[grpc]
listen = "127.0.0.1:0"
tokens = ["t"]
[web]
listen = "127.0.0.1:0"
[legacy]
secret = "qwerty"
[legacy.admin_param]
name = "adminpass"
value = "admin"
[web.limits]
events_per_second = 1000000
events_burst = 1000000
ip_events_per_second = 10000000
ip_events_burst = 10000000
connections_per_ip = 1000000
[log]
filter = "warn"
TOML
./target/release/socketgram serve -c "$work/socketgram.toml" > "$work/ready" 2> "$work/log" &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do grep -q listening "$work/ready" && break; sleep 0.1; done
web="$(grep -o 'web=[^ ]*' "$work/ready" | cut -d= -f2)"
perf record -F 499 -g -p "$server" -o "$work/perf.data" 2>/dev/null &
perf_pid=$!
./target/release/socketgram-bench --url "http://$web" --server-pid "$server" \
  throughput --visitors 100 --in-flight 1000 --messages 40000 "$@"
kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true
perf report -i "$work/perf.data" --no-children --sort dso,symbol --stdio 2>/dev/null \
  | grep -E '^ +[0-9]' | head -40

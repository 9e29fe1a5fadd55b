# The configuration of a benchmark server, shared by bench/run.sh and bench/faults.sh (source
# it). write_config FILE URL [TOP-LEVEL LINES]: ports 0, the legacy secret and admin
# parameter the generator uses, the gRPC token `bench-token`, log filter $LOG_FILTER (warn),
# and the limits raised so the generator measures the server, not the rate limiter, unless
# LIMITS=default (what a deployment has: the abuse scenarios).
write_config() {
  local file="$1" url="$2" top="${3:-}"
  {
    if [ -n "$top" ]; then printf '%s\n' "$top"; fi
    cat <<TOML
[core.database]
url = "$url"
max_connections = 16
[grpc]
listen = "127.0.0.1:0"
tokens = ["bench-token"]
[web]
listen = "127.0.0.1:0"
[legacy]
secret = "qwerty"
[legacy.admin_param]
name = "adminpass"
value = "admin"
[log]
filter = "${LOG_FILTER:-warn}"
TOML
    if [ "${LIMITS:-raised}" != default ]; then
      cat <<TOML
[web.limits]
events_per_second = 1000000
events_burst = 1000000
ip_events_per_second = 10000000
ip_events_burst = 10000000
connections_per_ip = 1000000
http_connections_per_ip = 1000000
unauthenticated_per_ip = 1000000
TOML
    fi
  } > "$file"
}

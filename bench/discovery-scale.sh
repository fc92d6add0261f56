#!/usr/bin/env bash
# discovery-scale.sh: health/service lookups on a catalog of 10,000 instances.
#
# Starts one durable wolke server (fresh temporary data dir, free loopback ports),
# registers INSTANCES service instances over NODES nodes through the catalog API
# (`wolke bench catalog`, 20 instances per service, each with a passing check), then
# measures GET /v1/health/service/bench-0?passing (a 20-instance answer, 13 KB of JSON,
# 1.1 KB gzipped) at C concurrent clients with these load generators in turn, ROUNDS
# times each: `wolke bench catalog` (a minimal Go HTTP/1.1 client, plain answers), wrk
# (C, one thread; plain, and as wrk-gzip with Accept-Encoding: gzip, which Go clients
# such as consul/api send) and hey (Go's net/http client, gzip). Each runs on the same
# 2 cores as the agent, and what the
# load generator itself costs shows up in the agent's figures, which is why all three
# are reported. For each round: requests/s, p50, p99 and the agent's CPU per request
# (utime+stime from /proc over the round). Prints a markdown table on stdout; progress
# goes to stderr. Only the processes it started are stopped on exit.
#
# PIN=1 runs the agent on CPU 0 and the load generator on CPU 1 (taskset), as if
# the clients were on other machines: unpinned, the agent's threads and the load
# generator's take turns on both cores and the scheduler's choices enter the tail.
# The agent's Go runtime then sizes itself to its one CPU (GOMAXPROCS=1).
#
# RATES="10000 20000" adds rounds of `wolke bench catalog -rate R` for each R: an open
# load of R requests/s over the C connections, latency counted from when each request
# was due. The closed loops measure the agent saturated (latency there is queueing);
# a rate measures what clients see at that load.
#
# Settings from the environment:
#   INSTANCES=10000  NODES=500  C=64  DURATION=10  (seconds per round)  ROUNDS=3
#   TOOLS="wolke wrk wrk-gzip hey"  PIN=0  RATES=""
set -euo pipefail

INSTANCES=${INSTANCES:-10000}
NODES=${NODES:-500}
C=${C:-64}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
TOOLS=${TOOLS:-"wolke wrk wrk-gzip hey"}
PIN=${PIN:-0}
RATES=${RATES:-}
server_cpu=() load_cpu=()
if [[ $PIN == 1 ]]; then
	server_cpu=(taskset -c 0) load_cpu=(taskset -c 1)
fi

root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/discovery-scale.XXXXXX")
pids=()
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "discovery-scale: $*" >&2; }

# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

for tool in $TOOLS; do
	bin=${tool%-gzip}
	if [[ $bin != wolke ]] && ! command -v "$bin" >/dev/null; then
		log "$bin not found (apt-get install $bin); leaving it out"
		TOOLS=${TOOLS//$tool/}
	fi
done

log "building in $tmp"
(cd "$root" && go build -o "$tmp/wolke" ./cmd/wolke)

http=$(free_port)
"${server_cpu[@]}" "$tmp/wolke" agent -server -bootstrap -data-dir "$tmp/data" -bind 127.0.0.1 -server-port "$(free_port)" \
	-serf-port "$(free_port)" -http-addr "127.0.0.1:$http" -dns-addr= >"$tmp/agent.log" 2>&1 &
agent=$!
pids+=("$agent")
for _ in $(seq 150); do
	curl -fsS -X PUT --data x "http://127.0.0.1:$http/v1/kv/ready" 2>/dev/null | grep -q true && break
	kill -0 "$agent" 2>/dev/null || break
	sleep 0.2
done
log "$("$tmp/wolke" version) on 127.0.0.1:$http"

"$tmp/wolke" bench catalog -http-addr "127.0.0.1:$http" -instances "$INSTANCES" -nodes "$NODES" -c 1 -d 1s -warmup 0s >/dev/null
url="http://127.0.0.1:$http/v1/health/service/bench-0?passing"
log "answer: $(curl -fsS "$url" | wc -c) bytes, $(curl -fsS "$url" | grep -o '"ServiceID"' | wc -l) instances"

hz=$(getconf CLK_TCK)
agent_ticks() {
	local f
	f=$(cat "/proc/$agent/stat")
	read -r -a f <<<"${f##*) }"
	echo $((f[11] + f[12]))
}

# to_us converts 1.23ms / 456.00us / 1.05s (wrk, hey in seconds) to microseconds.
to_us() {
	awk -v v="$1" 'BEGIN {
		n = v + 0
		if (v ~ /us$/) u = 1; else if (v ~ /ms$/) u = 1000; else if (v ~ /s$/) u = 1e6; else u = 1e6
		printf "%.0f", n * u
	}'
}

echo "| load generator | round | req/s | p50 | p99 | agent CPU/request |"
echo "|---|--:|--:|--:|--:|--:|"
for round in $(seq "$ROUNDS"); do
	for tool in $TOOLS $(for r in $RATES; do echo "wolke@$r"; done); do
		log "round $round: $tool c=$C ${DURATION}s"
		t0=$(agent_ticks)
		case $tool in
		wolke | wolke@*)
			rate=0
			[[ $tool == wolke@* ]] && rate=${tool#wolke@}
			out=$("${load_cpu[@]}" "$tmp/wolke" bench catalog -register=false -http-addr "127.0.0.1:$http" -c "$C" -rate "$rate" -d "${DURATION}s" -warmup 0s -format json)
			rps=$(jq -r .req_per_sec <<<"$out")
			n=$(jq -r .requests <<<"$out")
			p50=$(jq -r '.latency.p50_ns / 1000' <<<"$out")
			p99=$(jq -r '.latency.p99_ns / 1000' <<<"$out")
			;;
		wrk | wrk-gzip)
			hdr="X-Plain: 1"
			[[ $tool == wrk-gzip ]] && hdr="Accept-Encoding: gzip"
			out=$("${load_cpu[@]}" wrk -t1 -c "$C" -d "${DURATION}s" --latency -H "$hdr" "$url")
			rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
			n=$(awk '/requests in/ {print $1}' <<<"$out")
			p50=$(to_us "$(awk '$1 == "50%" {print $2}' <<<"$out")")
			p99=$(to_us "$(awk '$1 == "99%" {print $2}' <<<"$out")")
			;;
		hey)
			out=$("${load_cpu[@]}" hey -c "$C" -z "${DURATION}s" "$url")
			rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
			n=$(awk '/\[200\]/ {print $2}' <<<"$out")
			p50=$(to_us "$(awk '$1 == "50%%" || $1 == "50%" {print $3}' <<<"$out")")
			p99=$(to_us "$(awk '$1 == "99%%" || $1 == "99%" {print $3}' <<<"$out")")
			;;
		esac
		t1=$(agent_ticks)
		cpu=$(awk -v t="$((t1 - t0))" -v hz="$hz" -v n="$n" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')
		printf '| %s | %d | %.0f | %.2f ms | %.2f ms | %s µs |\n' "$tool" "$round" "$rps" \
			"$(awk -v v="$p50" 'BEGIN {print v / 1000}')" "$(awk -v v="$p99" 'BEGIN {print v / 1000}')" "$cpu"
	done
done

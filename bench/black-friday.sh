#!/usr/bin/env bash
# black-friday.sh: the demo shop's Black Friday benchmark. wrk loads the storefront's
# article pages (3,000 of them, spread) through the gateway of `wolke demo`: once
# steady, and once while instances are killed (-chaos) and every instance is
# redeployed one at a time (SIGUSR1). Prints req/s, p50/p99, failed requests, and the
# result per CPU core against 1.5 billion requests a day on ten cores (1,736 req/s
# per core).
#
#   bench/black-friday.sh              # DURATION=30s CONNS=64 THREADS=2 by default
#
# Needs wrk (apt-get install wrk) and Go; run from the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-30s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
log() { echo "black-friday: $*" >&2; }
command -v wrk >/dev/null || { log "needs wrk: apt-get install wrk"; exit 1; }
tmp=$(mktemp -d)
pids=()
source bench/common.sh
trap cleanup EXIT

go build -o "$tmp/wolke" ./cmd/wolke
cat > "$tmp/articles.lua" <<'LUA'
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/articles/" .. ((counter * 7919) % 3000 + 1))
end
LUA
sed 's|return wrk.format("GET", \(.*\))$|return wrk.format("GET", \1, {["Cache-Control"] = "no-cache"})|' \
	"$tmp/articles.lua" >"$tmp/articles-nocache.lua"

# start_demo ARGS...: runs wolke demo on free ports, sets $shop and $demo_pid.
start_demo() {
	local out="$tmp/demo-$RANDOM.log"
	: >"$out"
	"$tmp/wolke" demo -http-addr "127.0.0.1:$(free_port)" -listen "127.0.0.1:$(free_port)" \
		-admin-listen "127.0.0.1:$(free_port)" "$@" >"$out" 2>&1 &
	demo_pid=$!
	pids+=("$demo_pid")
	for _ in $(seq 600); do
		shop=$(sed -n 's|^the shop: *\(http://[^ ]*\)/$|\1|p' "$out")
		[[ -n $shop ]] && break
		sleep 0.5
	done
	[[ -n $shop ]] || { log "demo did not start"; cat "$out" >&2; exit 1; }
	# every service passing twice, and the storefront answering
	for _ in $(seq 120); do
		if tail -1 "$out" | grep -q ' 2/2' && ! tail -1 "$out" | grep -Eq ' [01]/2' \
			&& curl -sf -o /dev/null "$shop/articles/1"; then
			break
		fi
		sleep 0.5
	done
	demo_log=$out
}

stop_demo() {
	kill -TERM "$demo_pid" 2>/dev/null || true
	wait "$demo_pid" 2>/dev/null || true
}

# run NAME [DURATION]: wrk against the article pages; prints a markdown row.
run() {
	local name=$1 dur=${2:-$DURATION} out
	out=$(wrk -t"$THREADS" -c"$CONNS" -d"$dur" --latency -s "${script:-$tmp/articles.lua}" "$shop")
	local rps p50 p99 reqs non2xx sockerr
	rps=$(awk '/Requests\/sec/{print $2}' <<<"$out")
	p50=$(awk '$1=="50%"{print $2}' <<<"$out")
	p99=$(awk '$1=="99%"{print $2}' <<<"$out")
	reqs=$(awk '/requests in/{print $1}' <<<"$out")
	non2xx=$(awk '/Non-2xx/{print $5}' <<<"$out")
	sockerr=$(awk -F'[ ,]+' '/Socket errors/{print $4+$6+$8+$10}' <<<"$out")
	printf '| %s | %s | %s | %s | %s | %s | %.1f× |\n' "$name" "$rps" "$p50" "$p99" "$reqs" "$(( ${non2xx:-0} + ${sockerr:-0} ))" \
		"$(echo "$rps / 2 / 1736" | bc -l)"
}

# A shop opens warm: the pages have been asked for before the doors open, as they
# would be on a real Black Friday (a cold gateway cache sends 64 concurrent misses to
# the storefront at once, and its adaptive concurrency limit sheds part of them).
warm() { wrk -t2 -c16 -d10s -s "$tmp/articles.lua" "$shop" >/dev/null; }

echo "| run | req/s | p50 | p99 | requests | failed | per core vs 1,736 |"
echo "|---|--:|--:|--:|--:|--:|--:|"
start_demo
warm
run "steady"
# Cache-Control: no-cache makes the gateway revalidate, so every page is rendered by
# a storefront (its article and recommendations calls then mostly hit the cache).
script="$tmp/articles-nocache.lua" run "steady, every page rendered (no-cache)"
stop_demo

# The redeploy restarts 16 instances one at a time (about 4 s each): a minute at least.
start_demo -chaos -chaos-every 3s
warm
kill -USR1 "$demo_pid"
run "kills every 3 s + rolling redeploy" "${CHAOS_DURATION:-70s}"
grep -c 'chaos: SIGKILL' "$demo_log" | sed 's/^/instances killed: /' >&2
grep 'redeploy:' "$demo_log" >&2 || true
stop_demo

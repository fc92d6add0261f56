#!/usr/bin/env bash
# kv-vs-etcd.sh: wolke's KV store against etcd, in the same run on the same machine.
#
# Builds wolke and the etcd bench, starts one durable single-node etcd and one durable
# single-server wolke (each with a fresh temporary data dir, on free loopback ports),
# then interleaves benchmark rounds for each concurrency: puts, reads in wolke's default
# and ?consistent modes, and etcd's linearizable reads, with 256-byte values. Prints a
# markdown table on stdout; progress goes to stderr. Only the processes it started are
# stopped on exit. All traffic stays on 127.0.0.1.
#
# Needs Go and etcd (apt-get install etcd-server; Debian bookworm ships 3.4).
# Settings from the environment:
#   DURATION=10s      measured time per round       WARMUP=2s   unmeasured time before it
#   CONCURRENCY="1 16 64 256"                       KEYS=10000  key space
#   SYSTEMS="wolke etcd"  which systems to run      ETCD_CONNS=1  gRPC connections to etcd
#                     (wolke-h2c: the same wolke server, driven over HTTP/2 without TLS,
#                     requests multiplexed over few connections as etcd's gRPC client does)
#   ROUNDS=1       interleaved rounds per benchmark; the table shows the median round
#   RESULTS=FILE      also keep the JSON results (one line per round) in FILE
set -euo pipefail

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONCURRENCY=${CONCURRENCY:-"1 16 64 256"}
KEYS=${KEYS:-10000}
ROUNDS=${ROUNDS:-1}
SYSTEMS=${SYSTEMS:-"wolke etcd"}
ETCD_CONNS=${ETCD_CONNS:-1}
VALUE_SIZE=256

root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kv-vs-etcd.XXXXXX")
pids=()

# cleanup (common.sh) stops the processes in pids and removes $tmp.
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "kv-vs-etcd: $*" >&2; }

has() { [[ " $SYSTEMS " == *" $1 "* ]]; }

# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# wait_for NAME PID CMD... tries CMD every 0.2 s for up to 30 s, while process PID lives.
wait_for() {
	local what=$1 pid=$2
	shift 2
	for _ in $(seq 150); do
		if "$@" >/dev/null 2>&1; then
			return
		fi
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.2
	done
	log "$what did not come up; its log:"
	cat "$tmp/$what.log" >&2 || true
	exit 1
}

log "building in $tmp"
(cd "$root" && go build -o "$tmp/wolke" ./cmd/wolke)
(cd "$root/bench" && go build -o "$tmp/bench-etcd" .)

if has etcd; then
	if ! command -v etcd >/dev/null; then
		log "etcd not found: apt-get install etcd-server"
		exit 1
	fi
	etcd_client=$(free_port)
	etcd_peer=$(free_port)
	etcd --name bench --data-dir "$tmp/etcd-data" \
		--listen-client-urls "http://127.0.0.1:$etcd_client" --advertise-client-urls "http://127.0.0.1:$etcd_client" \
		--listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
		--initial-cluster "bench=http://127.0.0.1:$etcd_peer" --log-level warn >"$tmp/etcd.log" 2>&1 &
	pids+=($!)
	wait_for etcd "${pids[-1]}" curl -fsS "http://127.0.0.1:$etcd_client/health"
	log "$(etcd --version | head -1) on 127.0.0.1:$etcd_client"
fi

if has wolke || has wolke-h2c; then
	wolke_rpc=$(free_port)
	wolke_http=$(free_port)
	"$tmp/wolke" agent -server -bootstrap -data-dir "$tmp/wolke-data" -bind 127.0.0.1 \
		-server-port "$wolke_rpc" -serf-port "$(free_port)" -http-addr "127.0.0.1:$wolke_http" -dns-addr= >"$tmp/wolke.log" 2>&1 &
	pids+=($!)
	# A write answers true only once the server has elected itself leader.
	wait_for wolke "${pids[-1]}" sh -c "curl -fsS -X PUT --data x http://127.0.0.1:$wolke_http/v1/kv/kv-vs-etcd-ready | grep -q true"
	log "$("$tmp/wolke" version) on 127.0.0.1:$wolke_http"
fi

results="$tmp/results.jsonl"
: >"$results"
preloaded=" "

# round SYSTEM LABEL WORKLOAD READ-MODE C runs one benchmark and appends its result.
round() {
	local system=$1 label=$2 workload=$3 mode=$4 c=$5 preload=false
	if [[ $workload == get && $preloaded != *" $system "* ]]; then
		preload=true
		preloaded+="$system "
	fi
	local args=(-workload "$workload" -read-mode "$mode" -c "$c" -d "$DURATION" -warmup "$WARMUP"
		-value-size "$VALUE_SIZE" -keys "$KEYS" -preload="$preload" -label "$label" -format json)
	if [[ $workload == get ]]; then log "$label get ($mode) c=$c"; else log "$label $workload c=$c"; fi
	local out status=0
	case $system in
	wolke) out=$("$tmp/wolke" bench kv -http-addr "127.0.0.1:$wolke_http" "${args[@]}" 2>>"$tmp/bench.log") || status=$? ;;
	wolke-h2c) out=$("$tmp/wolke" bench kv -client h2c -http-addr "127.0.0.1:$wolke_http" "${args[@]}" 2>>"$tmp/bench.log") || status=$? ;;
	etcd) out=$("$tmp/bench-etcd" kv -endpoints "127.0.0.1:$etcd_client" -conns "$ETCD_CONNS" "${args[@]}" 2>>"$tmp/bench.log") || status=$? ;;
	esac
	if [[ -n $out ]]; then
		echo "$out" >>"$results"
	fi
	if ((status != 0)); then
		log "round failed (exit $status): $(tail -1 "$tmp/bench.log")"
	fi
}

for c in $CONCURRENCY; do
	for _ in $(seq "$ROUNDS"); do
		has wolke && round wolke wolke put default "$c"
		has wolke-h2c && round wolke-h2c wolke-h2c put default "$c"
		has etcd && round etcd etcd put default "$c"
		has wolke && round wolke wolke get default "$c"
		has wolke-h2c && round wolke-h2c wolke-h2c get default "$c"
		# etcd's default read is linearizable: Consul's ?consistent, not its default.
		has etcd && round etcd etcd get consistent "$c"
		has wolke && round wolke wolke get consistent "$c"
		has wolke-h2c && round wolke-h2c wolke-h2c get consistent "$c"
	done
done

if [[ -n ${RESULTS:-} ]]; then
	cp "$results" "$RESULTS"
fi
"$tmp/bench-etcd" table -median "$results"

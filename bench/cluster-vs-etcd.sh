#!/usr/bin/env bash
# cluster-vs-etcd.sh: a 3-server wolke cluster against a 3-member etcd cluster, in the
# same run on the same machine.
#
# Builds wolke and the etcd bench, starts three durable wolke servers (bootstrap-expect
# 3) and a durable 3-member etcd cluster (static --initial-cluster), each member with a
# fresh temporary data dir and its own free loopback ports, then interleaves benchmark
# rounds for each concurrency: puts and consistent reads (Consul's ?consistent, etcd's
# linearizable read) with 256-byte values. Every round spreads its clients over all
# three members: `wolke bench kv -http-addr a,b,c` deals its connections out round-robin,
# and etcd's client balances its requests over all -endpoints. Prints a markdown table
# on stdout; progress goes to stderr. Only the processes it started are stopped on exit.
# All traffic stays on 127.0.0.1.
#
# Needs Go and etcd (apt-get install etcd-server etcd-client; Debian bookworm ships 3.4).
# Settings from the environment:
#   DURATION=10s   measured time per round          WARMUP=2s   unmeasured time before it
#   CONCURRENCY="16 64 256"                         KEYS=10000  key space
#   SYSTEMS="wolke etcd"  which systems to run      ETCD_CONNS=1  etcd clients (each balances)
#                  (wolke-base: a second wolke cluster built from git ref BASE_REF, for A/B)
#   WORKLOADS="put get"
#   ROUNDS=1       interleaved rounds per benchmark; the table shows the median round
#   RESULTS=FILE   also keep the JSON results (one line per round) in FILE
#   WOLKE_FLAGS    extra flags for every wolke agent (for example -enable-debug)
set -euo pipefail

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONCURRENCY=${CONCURRENCY:-"16 64 256"}
KEYS=${KEYS:-10000}
ROUNDS=${ROUNDS:-1}
SYSTEMS=${SYSTEMS:-"wolke etcd"}
WORKLOADS=${WORKLOADS:-"put get"}
BASE_REF=${BASE_REF:-HEAD}
ETCD_CONNS=${ETCD_CONNS:-1}
VALUE_SIZE=256

me=cluster-vs-etcd
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/$me.XXXXXX")
# shellcheck source=cluster-lib.sh
source "$root/bench/cluster-lib.sh"
trap cleanup EXIT
trap 'exit 130' INT TERM

has() { [[ " $SYSTEMS " == *" $1 "* ]]; }

build
if has etcd; then
	start_etcd etcd
	log "$(etcd --version | head -1): 3 members on $etcd_addrs"
fi
if has wolke; then
	start_wolke wolke
	wolke_cluster=$wolke_addrs
	log "$("$tmp/wolke" version): 3 servers on $wolke_cluster"
fi
if has wolke-base; then
	mkdir -p "$tmp/base-src"
	git -C "$root" archive "$BASE_REF" | tar -x -C "$tmp/base-src"
	(cd "$tmp/base-src" && go build -o "$tmp/wolke-base" ./cmd/wolke)
	start_wolke wolke-base "$tmp/wolke-base"
	base_cluster=$wolke_addrs
	log "wolke-base ($BASE_REF, $(git -C "$root" rev-parse --short "$BASE_REF")): 3 servers on $base_cluster"
fi

results="$tmp/results.jsonl"
: >"$results"
preloaded=" "

# round SYSTEM WORKLOAD C runs one benchmark and appends its result.
round() {
	local system=$1 workload=$2 c=$3 preload=false
	if [[ $workload == get && $preloaded != *" $system "* ]]; then
		preload=true
		preloaded+="$system "
	fi
	local args=(-workload "$workload" -read-mode consistent -c "$c" -d "$DURATION" -warmup "$WARMUP"
		-value-size "$VALUE_SIZE" -keys "$KEYS" -preload="$preload" -label "$system x3" -format json)
	log "$system $workload c=$c"
	local out status=0
	case $system in
	wolke) out=$("$tmp/wolke" bench kv -http-addr "$wolke_cluster" "${args[@]}" 2>>"$tmp/bench.log") || status=$? ;;
	wolke-base) out=$("$tmp/wolke" bench kv -http-addr "$base_cluster" "${args[@]}" 2>>"$tmp/bench.log") || status=$? ;;
	etcd) out=$("$tmp/bench-etcd" kv -endpoints "$etcd_addrs" -conns "$ETCD_CONNS" "${args[@]}" 2>>"$tmp/bench.log") || status=$? ;;
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
		for workload in $WORKLOADS; do
			has wolke && round wolke "$workload" "$c"
			has wolke-base && round wolke-base "$workload" "$c"
			has etcd && round etcd "$workload" "$c"
		done
	done
done

if [[ -n ${RESULTS:-} ]]; then
	cp "$results" "$RESULTS"
fi
log "done; load average $(loadavg)"
"$tmp/bench-etcd" table -median "$results"

#!/usr/bin/env bash
# failover.sh: how long a 3-member wolke cluster and a 3-member etcd cluster accept no
# write when their leader is killed, measured the same way in the same run.
#
# For each system, TRIALS times: start a fresh durable 3-member cluster (as
# cluster-vs-etcd.sh does), run a put load of 16 writers spread over all members for
# DURATION (after a 1 s warm-up), SIGKILL the current leader KILL_AT into the measured
# run (wolke: GET /v1/status/leader names the leader's server address; etcd: etcdctl
# endpoint status marks it), and take the run's longest stall: the longest time in which
# no write succeeded, from the bench's JSON output (accurate to 100 µs; see
# pkg/benchkv/stall.go). Then stop the cluster and delete it. Trials of the two systems
# alternate. Prints every trial on stderr and a markdown table with the median per
# system on stdout. Only the processes it started are signalled. All traffic stays on
# 127.0.0.1.
#
# Settings from the environment:
#   TRIALS=5  DURATION=15s  KILL_AT=5 (seconds into the measured run)  WRITERS=16
#   SYSTEMS="wolke etcd"    WOLKE_FLAGS  extra flags for every wolke agent
#   KEEP=1    keep the data dirs and logs (the path is printed at the end)
set -euo pipefail

TRIALS=${TRIALS:-5}
DURATION=${DURATION:-15s}
KILL_AT=${KILL_AT:-5}
WRITERS=${WRITERS:-16}
SYSTEMS=${SYSTEMS:-"wolke etcd"}
WARMUP_S=1

me=failover
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/$me.XXXXXX")
# shellcheck source=cluster-lib.sh
source "$root/bench/cluster-lib.sh"
trap cleanup EXIT
trap 'exit 130' INT TERM

now_ms() { echo $(($(date +%s%N) / 1000000)); }
# secs MS prints milliseconds as seconds with two decimals.
secs() { printf '%d.%02d' $(($1 / 1000)) $((($1 % 1000) / 10)); }

build

declare -A stalls # system -> stalls in ms, space-separated

# trial SYSTEM N runs one trial and appends its stall to stalls[SYSTEM].
trial() {
	local system=$1 n=$2 name="$1-$2" members addrs leader i out="$tmp/$1-$2.json"
	case $system in
	wolke)
		start_wolke "$name"
		members=("${wolke_pid[@]}") addrs=$wolke_addrs
		;;
	etcd)
		start_etcd "$name"
		members=("${etcd_pid[@]}") addrs=$etcd_addrs
		;;
	esac
	local args=(-workload put -c "$WRITERS" -d "$DURATION" -warmup "${WARMUP_S}s" -value-size 256 -keys 10000
		-label "$system" -format json)
	local start
	start=$(now_ms)
	case $system in
	wolke) "$tmp/wolke" bench kv -http-addr "$addrs" "${args[@]}" >"$out" 2>>"$tmp/bench.log" & ;;
	etcd) "$tmp/bench-etcd" kv -endpoints "$addrs" "${args[@]}" >"$out" 2>>"$tmp/bench.log" & ;;
	esac
	local bench=$!
	pids+=("$bench")
	sleep $((WARMUP_S + KILL_AT))
	for _ in $(seq 50); do
		leader=$("${system}_leader") && break
		sleep 0.1
	done
	if [[ -z $leader ]]; then
		log "$system trial $n: no leader found; skipped"
		stop_members "$bench" "${members[@]}"
		return
	fi
	local killed_at=$(($(now_ms) - start))
	# Braces: bash reports a job killed by a signal on the shell's stderr.
	{
		kill -9 "${members[leader]}"
		wait "${members[leader]}"
	} 2>/dev/null || true
	wait "$bench" || log "$system trial $n: bench exited with $?: $(tail -1 "$tmp/bench.log")"
	stop_members "$bench" "${members[@]}"
	[[ -n ${KEEP:-} ]] || rm -rf "$tmp/c-$name"
	local stall at errors ops
	read -r stall at errors ops < <(jq -r '[(.longest_stall_ns / 1e6 | floor), (.longest_stall_at_ns / 1e6 | floor), .errors, .ops] | @tsv' "$out")
	log "$system trial $n: killed member $((leader + 1)) (the leader) $(secs "$killed_at")s after the bench started" \
		"(measuring starts ~${WARMUP_S}s in); longest stall $(secs "$stall")s from $(secs "$at")s into the measured run;" \
		"$ops writes, $errors errors"
	stalls[$system]+="$stall "
}

has() { [[ " $SYSTEMS " == *" $1 "* ]]; }

for n in $(seq "$TRIALS"); do
	for system in $SYSTEMS; do
		has "$system" && trial "$system" "$n"
	done
done

log "done; load average $(loadavg)"

# The table: one row per system, every trial's stall and the median.
header="| system |" rule="|---|"
for n in $(seq "$TRIALS"); do
	header+=" trial $n |" rule+="--:|"
done
echo "$header median |"
echo "$rule--:|"
for system in $SYSTEMS; do
	read -ra xs <<<"${stalls[$system]:-}"
	row="| $system |"
	for x in "${xs[@]}"; do
		row+=" $(secs "$x")s |"
	done
	for ((k = ${#xs[@]}; k < TRIALS; k++)); do
		row+=" - |"
	done
	median=-
	if ((${#xs[@]} > 0)); then
		mapfile -t sorted < <(printf '%s\n' "${xs[@]}" | sort -n)
		median="$(secs "${sorted[$(((${#sorted[@]} - 1) / 2))]}")s"
	fi
	echo "$row $median |"
done

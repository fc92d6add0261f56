#!/usr/bin/env bash
# lock-handoff.sh: lock hand-off latency of `wolke lock` against etcd 3.4's
# `etcdctl lock`, measured the same way in the same run, plus wolke's session
# create+destroy throughput.
#
# Starts one durable single-server wolke and one durable single-node etcd (fresh
# temporary data dirs, free loopback ports). Each sample runs two holders of one lock,
# as two processes of the system's own CLI:
#   A holds the lock; its child waits for a go-file, writes t0 (date +%s%N) and exits,
#     so that A releases the lock;
#   B is started once A holds the lock and is seen waiting for it (wolke: two sessions
#     exist; etcd: two keys under the lock prefix), then 50 ms more;
#   B's child writes t1 as its first action.
# hand-off = t1 - t0: the release, the wake-up of the waiting client, its acquire, and
# the start of its child (sh + date, the same for both). Samples alternate between the
# systems. Prints a markdown table on stdout; progress goes to stderr. Only the
# processes it started are stopped on exit; all traffic stays on 127.0.0.1.
#
# Needs Go, curl and etcd + etcdctl (apt-get install etcd-server etcd-client).
# Settings from the environment:
#   SAMPLES=100             hand-off samples per system
#   SESSION_DURATION=10s    length of the session create+destroy run
#   SESSION_C="1 16 64"     concurrencies of the session run
set -euo pipefail

SAMPLES=${SAMPLES:-100}
SESSION_DURATION=${SESSION_DURATION:-10s}
SESSION_C=${SESSION_C:-"1 16 64"}

root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/lock-handoff.XXXXXX")
pids=()

# cleanup (common.sh) stops the processes in pids and removes $tmp.
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "lock-handoff: $*" >&2; }

# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# wait_for NAME PID CMD... tries CMD every 0.1 s for up to 30 s, while process PID lives.
wait_for() {
	local what=$1 pid=$2
	shift 2
	for _ in $(seq 300); do
		if "$@" >/dev/null 2>&1; then
			return
		fi
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	log "$what did not come up; its log:"
	cat "$tmp/$what.log" >&2 || true
	exit 1
}

# poll SECONDS CMD... tries CMD every 5 ms for up to SECONDS.
poll() {
	local limit=$1
	shift
	local end=$((SECONDS + limit))
	until "$@"; do
		if ((SECONDS > end)); then
			return 1
		fi
		sleep 0.005
	done
}

for bin in etcd etcdctl curl; do
	command -v "$bin" >/dev/null || {
		log "$bin not found"
		exit 1
	}
done

log "building in $tmp"
(cd "$root" && go build -o "$tmp/wolke" ./cmd/wolke)

etcd_client=$(free_port)
etcd_peer=$(free_port)
etcd --name bench --data-dir "$tmp/etcd-data" \
	--listen-client-urls "http://127.0.0.1:$etcd_client" --advertise-client-urls "http://127.0.0.1:$etcd_client" \
	--listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
	--initial-cluster "bench=http://127.0.0.1:$etcd_peer" --log-level warn >"$tmp/etcd.log" 2>&1 &
pids+=($!)
wait_for etcd "${pids[-1]}" curl -fsS "http://127.0.0.1:$etcd_client/health"
etcd_version=$(etcd --version | head -1)
log "$etcd_version on 127.0.0.1:$etcd_client"

wolke_http=127.0.0.1:$(free_port)
"$tmp/wolke" agent -server -bootstrap -data-dir "$tmp/wolke-data" -bind 127.0.0.1 \
	-server-port "$(free_port)" -serf-port "$(free_port)" -http-addr "$wolke_http" -log-level warn >"$tmp/wolke.log" 2>&1 &
pids+=($!)
wait_for wolke "${pids[-1]}" sh -c "curl -fsS -X PUT --data x http://$wolke_http/v1/kv/lock-handoff-ready | grep -q true"
wolke_version=$("$tmp/wolke" version)
log "$wolke_version on $wolke_http"

export ETCDCTL_API=3
etcdctl=(etcdctl --endpoints "127.0.0.1:$etcd_client")

# Waiting-for-B checks: the second holder has registered and is blocked.
wolke_two_waiting() {
	[[ $(curl -fsS "http://$wolke_http/v1/session/list" | grep -o '"ID"' | wc -l) -ge 2 ]]
}
etcd_two_waiting() {
	[[ $("${etcdctl[@]}" get --prefix bench/handoff --keys-only | grep -c .) -ge 2 ]]
}

# holder SYSTEM CHILD-SCRIPT starts one holder in the background.
holder() {
	local system=$1 script=$2
	case $system in
	wolke) "$tmp/wolke" lock -http-addr "$wolke_http" bench/handoff -- sh -c "$script" >>"$tmp/holders.log" 2>&1 & ;;
	etcd) "${etcdctl[@]}" lock bench/handoff -- sh -c "$script" >>"$tmp/holders.log" 2>&1 & ;;
	esac
	pids+=($!)
}

# sample SYSTEM I prints one hand-off in microseconds.
sample() {
	local system=$1 i=$2 d="$tmp/s-$1-$2"
	mkdir "$d"
	holder "$system" "touch $d/a-in; n=0; while [ ! -e $d/go ] && [ \$n -lt 2000 ]; do sleep 0.005; n=\$((n+1)); done; date +%s%N > $d/t0"
	local a=${pids[-1]}
	poll 10 test -e "$d/a-in" || { log "$system: A never got the lock"; return 1; }
	holder "$system" "date +%s%N > $d/t1"
	local b=${pids[-1]}
	poll 10 "${system}_two_waiting" || { log "$system: B never waited"; return 1; }
	sleep 0.05 # let B's blocking read (wolke) or watch (etcd) be in place
	touch "$d/go"
	wait "$a" "$b" || { log "$system: a holder failed"; return 1; }
	echo $((($(cat "$d/t1") - $(cat "$d/t0")) / 1000))
}

for sys in wolke etcd; do : >"$tmp/$sys.us"; done
log "$SAMPLES hand-off samples per system"
for i in $(seq "$SAMPLES"); do
	for sys in wolke etcd; do
		sample "$sys" "$i" >>"$tmp/$sys.us"
	done
	((i % 20 == 0)) && log "$i samples"
done

# pct FILE P prints the P-th percentile (nearest rank) of the numbers in FILE, in ms.
pct() {
	sort -n "$1" | awk -v p="$2" '{v[NR]=$1} END {r=int((p*NR+99)/100); if (r<1) r=1; printf "%.2f", v[r]/1000}'
}
mean() { awk '{s+=$1} END {printf "%.2f", s/NR/1000}' "$1"; }

echo "## Lock hand-off: release by one process to the next holder's child start ($SAMPLES samples each, same run)"
echo
echo "| system | p50 ms | p99 ms | mean ms | max ms |"
echo "|---|---|---|---|---|"
echo "| $wolke_version (\`wolke lock\`, single server) | $(pct "$tmp/wolke.us" 50) | $(pct "$tmp/wolke.us" 99) | $(mean "$tmp/wolke.us") | $(pct "$tmp/wolke.us" 100) |"
echo "| $etcd_version (\`etcdctl lock\`, single node) | $(pct "$tmp/etcd.us" 50) | $(pct "$tmp/etcd.us" 99) | $(mean "$tmp/etcd.us") | $(pct "$tmp/etcd.us" 100) |"
echo
echo "## Session create+destroy (wolke, $SESSION_DURATION per row)"
echo
for c in $SESSION_C; do
	echo "- $("$tmp/wolke" bench session -http-addr "$wolke_http" -c "$c" -duration "$SESSION_DURATION")"
done
echo
echo "load average after the run: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs"

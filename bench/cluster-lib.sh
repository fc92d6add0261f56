# cluster-lib.sh: starts and stops 3-member wolke and etcd clusters on loopback, for
# cluster-vs-etcd.sh and failover.sh (sourced, not run). The sourcing script sets
# $tmp (a fresh temporary directory, removed by cleanup) and $me (the name in log
# lines), and installs `trap cleanup EXIT`. Every process started here is recorded in
# $pids, and only those are ever signalled. Each member gets a data dir of its own, so
# both systems write with fsync as in production.
#
# After start_wolke NAME / start_etcd NAME, these hold the cluster's members, by index:
#   wolke_http[i]  HTTP API host:port      wolke_rpc[i]   server (Raft) port
#   wolke_pid[i]   process id
#   etcd_client[i] client host:port        etcd_pid[i]    process id
# and wolke_addrs / etcd_addrs the comma-separated client addresses of all three.

MEMBERS=3
# Extra flags for every wolke agent, for example WOLKE_FLAGS=-enable-debug.
WOLKE_FLAGS=${WOLKE_FLAGS:-}

pids=()

log() { echo "$me: $*" >&2; }

# loadavg prints the 1, 5 and 15 minute load averages: other work on the machine
# shares its cores with the clusters under test.
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# wait_for LOG PID CMD... tries CMD every 0.1 s for up to 30 s, while process PID
# lives; on failure it shows the log file LOG and exits.
wait_for() {
	local logfile=$1 pid=$2
	shift 2
	for _ in $(seq 300); do
		if "$@" >/dev/null 2>&1; then
			return
		fi
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	log "$* did not succeed; $logfile:"
	tail -20 "$logfile" >&2 || true
	exit 1
}

# build compiles wolke and the etcd bench into $tmp.
build() {
	log "building in $tmp; load average $(loadavg)"
	(cd "$root" && go build -o "$tmp/wolke" ./cmd/wolke)
	(cd "$root/bench" && go build -o "$tmp/bench-etcd" .)
	if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
		log "etcd or etcdctl not found: apt-get install etcd-server etcd-client"
		exit 1
	fi
}

# stop_members PID... stops the given processes (started by this script) and waits for
# them: SIGTERM, then SIGKILL after 10 s. They are then dropped from $pids, so that
# cleanup never signals a process id that the system has since given to another.
stop_members() {
	local pid p keep=()
	for pid in "$@"; do
		kill "$pid" 2>/dev/null || true
	done
	for _ in $(seq 100); do
		local alive=0
		for pid in "$@"; do
			kill -0 "$pid" 2>/dev/null && alive=1
		done
		((alive)) || break
		sleep 0.1
	done
	for pid in "$@"; do
		kill -9 "$pid" 2>/dev/null || true
		# Braces: bash reports a job killed by a signal on the shell's stderr.
		{ wait "$pid"; } 2>/dev/null || true
	done
	for p in "${pids[@]}"; do
		[[ " $* " == *" $p "* ]] || keep+=("$p")
	done
	pids=("${keep[@]}")
}

# put_ok ADDR checks that a write through the agent at ADDR is acknowledged.
put_ok() { curl -fsS -m 2 -X PUT --data x "http://$1/v1/kv/cluster-bench-ready" | grep -q true; }

# start_wolke NAME [BINARY] starts three durable wolke servers (of BINARY, by default the
# one built) under $tmp/c-NAME and waits until a write succeeds through each of them.
start_wolke() {
	local name=$1 bin=${2:-$tmp/wolke} i serf1=""
	wolke_http=() wolke_rpc=() wolke_pid=()
	for i in 0 1 2; do
		local dir="$tmp/c-$name/s$((i + 1))" http rpc serf
		mkdir -p "$dir"
		http=$(free_port) rpc=$(free_port) serf=$(free_port)
		local join=()
		if ((i > 0)); then join=(-retry-join "127.0.0.1:$serf1" -retry-interval 1s); else serf1=$serf; fi
		# shellcheck disable=SC2086 # WOLKE_FLAGS is a list of flags
		"$bin" agent -server -bootstrap-expect "$MEMBERS" -data-dir "$dir/data" -node "s$((i + 1))" \
			-bind 127.0.0.1 -server-port "$rpc" -serf-port "$serf" -http-addr "127.0.0.1:$http" -dns-addr= \
			"${join[@]}" $WOLKE_FLAGS >"$dir/log" 2>&1 &
		pids+=($!)
		wolke_pid[i]=$! wolke_http[i]="127.0.0.1:$http" wolke_rpc[i]="127.0.0.1:$rpc"
	done
	for i in 0 1 2; do
		wait_for "$tmp/c-$name/s$((i + 1))/log" "${wolke_pid[i]}" put_ok "${wolke_http[i]}"
	done
	wolke_addrs=$(
		IFS=,
		echo "${wolke_http[*]}"
	)
}

# wolke_leader prints the index of the wolke server that leads, if any.
wolke_leader() {
	local leader i
	for i in 0 1 2; do
		kill -0 "${wolke_pid[i]}" 2>/dev/null || continue
		leader=$(curl -fsS -m 1 "http://${wolke_http[i]}/v1/status/leader" 2>/dev/null | tr -d '"') || continue
		[[ -n $leader ]] && break
	done
	for i in 0 1 2; do
		if [[ ${wolke_rpc[i]} == "$leader" ]]; then
			echo "$i"
			return
		fi
	done
	return 1
}

# start_etcd NAME starts a durable 3-member etcd cluster under $tmp/c-NAME and waits until
# every member is healthy and a write succeeds.
start_etcd() {
	local name=$1 i initial="" peers=()
	etcd_client=() etcd_pid=()
	for i in 0 1 2; do
		etcd_client[i]="127.0.0.1:$(free_port)"
		peers[i]="127.0.0.1:$(free_port)"
		initial+="${initial:+,}e$((i + 1))=http://${peers[i]}"
	done
	for i in 0 1 2; do
		local dir="$tmp/c-$name/e$((i + 1))"
		mkdir -p "$dir"
		etcd --name "e$((i + 1))" --data-dir "$dir/data" \
			--listen-client-urls "http://${etcd_client[i]}" --advertise-client-urls "http://${etcd_client[i]}" \
			--listen-peer-urls "http://${peers[i]}" --initial-advertise-peer-urls "http://${peers[i]}" \
			--initial-cluster "$initial" --initial-cluster-state new --initial-cluster-token "$name" \
			--log-level warn >"$dir/log" 2>&1 &
		pids+=($!)
		etcd_pid[i]=$!
	done
	etcd_addrs=$(
		IFS=,
		echo "${etcd_client[*]}"
	)
	for i in 0 1 2; do
		wait_for "$tmp/c-$name/e$((i + 1))/log" "${etcd_pid[i]}" \
			etcdctl --endpoints "${etcd_client[i]}" --command-timeout 2s put cluster-bench-ready x
	done
}

# etcd_leader prints the index of the etcd member that leads, if any. etcdctl's simple
# output is "endpoint, ID, version, DB size, is leader, ..." per endpoint.
etcd_leader() {
	local line ep isleader i
	while IFS= read -r line; do
		ep=$(cut -d, -f1 <<<"$line" | tr -d ' ')
		isleader=$(cut -d, -f5 <<<"$line" | tr -d ' ')
		[[ $isleader == true ]] || continue
		for i in 0 1 2; do
			if [[ ${etcd_client[i]} == "$ep" ]]; then
				echo "$i"
				return
			fi
		done
	done < <(etcdctl --endpoints "$etcd_addrs" --command-timeout 1s endpoint status 2>/dev/null)
	return 1
}

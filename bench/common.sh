# common.sh: helpers the benchmark scripts share. Source it after defining log().

# cleanup stops the processes the script started (their PIDs in the array pids), waits
# for them, and removes the script's temporary directory $tmp; scripts run it on EXIT.
cleanup() {
	local pid
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	if [[ -n ${KEEP:-} ]]; then
		echo "kept $tmp (KEEP is set)" >&2
	else
		rm -rf "$tmp"
	fi
}

# free_port prints a loopback port that nothing listens on and that no earlier call
# returned, below Linux's range of ephemeral ports (32768 and up), where an outgoing
# connection could hold it.
taken=" "
free_port() {
	local port
	for _ in $(seq 100); do
		port=$((20000 + RANDOM % 12000))
		[[ $taken == *" $port "* ]] && continue
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			taken+="$port "
			echo "$port"
			return
		fi
	done
	log "no free port found"
	exit 1
}

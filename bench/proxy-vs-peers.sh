#!/usr/bin/env bash
# proxy-vs-peers.sh: wolke's edge gateway against nginx, HAProxy and Caddy, in the same
# run on the same machine, in front of the same two backends.
#
# Starts two nginx backends (worker_processes 1, `return 200` with a 100-byte body,
# access_log off), then the contestants on free loopback ports:
#   direct     wrk straight at one backend (the ceiling; no proxy)
#   wolke      `wolke agent -dev` with both backends registered as service `bench` through
#              the HTTP API, and `wolke proxy -access-log=false` as its own process
#   wolke-log  a second `wolke proxy` with its access log on, written to /dev/null
#   nginx      worker_processes auto, upstream keepalive
#   haproxy    nbthread 2, http-reuse always
#   caddy      reverse_proxy to both backends (Caddy's defaults otherwise)
# and runs `wrk -t1 --latency` at each concurrency, rounds interleaved across the
# contestants. Prints a markdown table on stdout with the median of the rounds: req/s,
# p50 and p99 latency, req/s relative to nginx, and the proxy's CPU time per request
# (utime+stime from /proc/PID/stat, summed over the proxy's processes: nginx master and
# workers, haproxy, caddy, wolke proxy; the agent is not in the request path and not
# counted). Progress goes to stderr. Only the processes it started are stopped on exit.
# All traffic stays on 127.0.0.1.
#
# Needs Go, nginx, haproxy and wrk (apt-get install nginx haproxy wrk) and Caddy
# (go install github.com/caddyserver/caddy/v2/cmd/caddy@v2.11.9; found on PATH or in
# ~/go/bin, or set CADDY=/path/to/caddy).
# Settings from the environment:
#   DURATION=10s     measured time per round     WARMUP=2s   unmeasured run per contestant, at the highest CONNS
#   ROUNDS=3         rounds (the table shows the median)
#   CONNS="64 256"   wrk connections (-c); wrk always uses one thread (-t1)
#   CONTESTANTS="direct wolke wolke-log nginx haproxy caddy"
#   RESULTS=FILE     also keep the raw results (one tab-separated line per round) in FILE
#   WOLKE_BIN=PATH   a wolke binary built elsewhere (default: build this checkout)
set -euo pipefail

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-"64 256"}
CONTESTANTS=${CONTESTANTS:-"direct wolke wolke-log nginx haproxy caddy"}

root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/proxy-vs-peers.XXXXXX")
chmod 755 "$tmp" # nginx workers may run as nobody
pids=()

# cleanup (common.sh) stops the processes in pids and removes $tmp.
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "proxy-vs-peers: $*" >&2; }

has() { [[ " $CONTESTANTS " == *" $1 "* ]]; }

# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

need() {
	if ! command -v "$1" >/dev/null; then
		log "$1 not found: $2"
		exit 1
	fi
}
need wrk "apt-get install wrk"
need nginx "apt-get install nginx"
has haproxy && need haproxy "apt-get install haproxy"
if has caddy; then
	CADDY=${CADDY:-$(command -v caddy || echo "$HOME/go/bin/caddy")}
	if [[ ! -x $CADDY ]]; then
		log "caddy not found: go install github.com/caddyserver/caddy/v2/cmd/caddy@v2.11.9 (or set CADDY)"
		exit 1
	fi
fi

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

# The backends answer every path with 100 bytes.
body=$(printf 'x%.0s' $(seq 99))

# start_nginx NAME CONFIG-BODY starts nginx in the foreground with its own prefix dir.
start_nginx() {
	local name=$1 conf=$2
	mkdir -p "$tmp/$name"
	cat >"$tmp/$name/nginx.conf" <<-EOF
		daemon off;
		pid $tmp/$name/nginx.pid;
		error_log $tmp/$name.log warn;
		$conf
	EOF
	nginx -p "$tmp/$name/" -e "$tmp/$name.log" -c "$tmp/$name/nginx.conf" >>"$tmp/$name.log" 2>&1 &
	pids+=($!)
}

backends=()
for i in 1 2; do
	bport=$(free_port)
	start_nginx "backend$i" "worker_processes 1;
events { worker_connections 16384; }
http {
	access_log off;
	keepalive_requests 1000000;
	server {
		listen 127.0.0.1:$bport backlog=4096;
		location / { default_type text/plain; return 200 '$body
'; }
	}
}"
	wait_for "backend$i" "${pids[-1]}" curl -fsS "http://127.0.0.1:$bport/"
	backends+=("$bport")
done
log "$(nginx -v 2>&1) backends on 127.0.0.1:${backends[0]} and :${backends[1]}"

declare -A port pid
port[direct]=${backends[0]}

if has wolke || has wolke-log; then
	if [[ -n ${WOLKE_BIN:-} ]]; then
		cp "$WOLKE_BIN" "$tmp/wolke"
	else
		log "building wolke in $tmp"
		(cd "$root" && go build -o "$tmp/wolke" ./cmd/wolke)
	fi
	agent_http=$(free_port)
	"$tmp/wolke" agent -dev -http-addr "127.0.0.1:$agent_http" -server-port "$(free_port)" -serf-port "$(free_port)" \
		-dns-addr= -log-level warn >"$tmp/agent.log" 2>&1 &
	pids+=($!)
	wait_for agent "${pids[-1]}" sh -c "curl -fsS -X PUT --data x http://127.0.0.1:$agent_http/v1/kv/proxy-vs-peers-ready | grep -q true"
	for i in 1 2; do
		curl -fsS -X PUT --data "{\"ID\":\"bench-$i\",\"Name\":\"bench\",\"Address\":\"127.0.0.1\",\"Port\":${backends[i - 1]}}" \
			"http://127.0.0.1:$agent_http/v1/agent/service/register" >/dev/null
	done
	for c in wolke wolke-log; do
		has "$c" || continue
		port[$c]=$(free_port)
		admin=$(free_port)
		accesslog=false
		[[ $c == wolke-log ]] && accesslog=true
		"$tmp/wolke" proxy -listen "127.0.0.1:${port[$c]}" -admin-listen "127.0.0.1:$admin" -http-addr "127.0.0.1:$agent_http" \
			-access-log="$accesslog" -log-level warn >/dev/null 2>"$tmp/$c.log" &
		pids+=($!)
		pid[$c]=$!
		# Routable once both instances are in the routing table.
		wait_for "$c" "${pid[$c]}" sh -c "curl -fsS http://127.0.0.1:$admin/v1/proxy/routes | grep -c '\"addr\"' | grep -qx 4"
	done
	log "$("$tmp/wolke" version | head -1) gateway(s) on 127.0.0.1:${port[wolke]:-} ${port[wolke-log]:-}"
fi

if has nginx; then
	port[nginx]=$(free_port)
	start_nginx nginx "worker_processes auto;
events { worker_connections 16384; }
http {
	access_log off;
	keepalive_requests 1000000;
	upstream bench {
		server 127.0.0.1:${backends[0]};
		server 127.0.0.1:${backends[1]};
		keepalive 256;
		keepalive_requests 1000000;
	}
	server {
		listen 127.0.0.1:${port[nginx]} backlog=4096;
		location / {
			proxy_pass http://bench;
			proxy_http_version 1.1;
			proxy_set_header Connection \"\";
		}
	}
}"
	pid[nginx]=${pids[-1]}
	wait_for nginx "${pid[nginx]}" curl -fsS "http://127.0.0.1:${port[nginx]}/bench/"
	log "nginx on 127.0.0.1:${port[nginx]}"
fi

if has haproxy; then
	port[haproxy]=$(free_port)
	cat >"$tmp/haproxy.cfg" <<-EOF
		global
			nbthread 2
			maxconn 4096
		defaults
			mode http
			timeout connect 5s
			timeout client 30s
			timeout server 30s
			http-reuse always
		frontend fe
			bind 127.0.0.1:${port[haproxy]}
			default_backend be
		backend be
			balance roundrobin
			server s1 127.0.0.1:${backends[0]}
			server s2 127.0.0.1:${backends[1]}
	EOF
	haproxy -f "$tmp/haproxy.cfg" >"$tmp/haproxy.log" 2>&1 &
	pids+=($!)
	pid[haproxy]=$!
	wait_for haproxy "${pid[haproxy]}" curl -fsS "http://127.0.0.1:${port[haproxy]}/bench/"
	log "$(haproxy -v | head -1) on 127.0.0.1:${port[haproxy]}"
fi

if has caddy; then
	port[caddy]=$(free_port)
	cat >"$tmp/Caddyfile" <<-EOF
		{
			admin off
			auto_https off
			persist_config off
		}
		http://127.0.0.1:${port[caddy]} {
			reverse_proxy 127.0.0.1:${backends[0]} 127.0.0.1:${backends[1]}
		}
	EOF
	# Caddy keeps its state under XDG dirs: keep them in $tmp.
	XDG_DATA_HOME=$tmp/caddy-data XDG_CONFIG_HOME=$tmp/caddy-config \
		"$CADDY" run --config "$tmp/Caddyfile" --adapter caddyfile >"$tmp/caddy.log" 2>&1 &
	pids+=($!)
	pid[caddy]=$!
	wait_for caddy "${pid[caddy]}" curl -fsS "http://127.0.0.1:${port[caddy]}/bench/"
	log "caddy $("$CADDY" version | head -1) on 127.0.0.1:${port[caddy]}"
fi

# cpu_ticks PID prints utime+stime of PID and its child processes (nginx's workers), in
# clock ticks.
cpu_ticks() {
	local total=0 p f
	for p in "$1" $(pgrep -P "$1" || true); do
		f=$(cat "/proc/$p/stat" 2>/dev/null) || continue
		# Fields after the command name, which may hold spaces: state is 3, utime 14.
		read -r -a f <<<"${f##*) }"
		total=$((total + f[11] + f[12]))
	done
	echo "$total"
}
hz=$(getconf CLK_TCK)

# to_us converts wrk's 1.23ms / 456.00us / 1.05s to microseconds.
to_us() {
	awk -v v="$1" 'BEGIN {
		n = v + 0
		if (v ~ /us$/) u = 1; else if (v ~ /ms$/) u = 1000; else if (v ~ /m$/) u = 60e6; else if (v ~ /s$/) u = 1e6; else u = 1
		printf "%.0f", n * u
	}'
}

results=$tmp/results.tsv
: >"$results"

# round NAME C R runs wrk against one contestant and appends a result line.
round() {
	local name=$1 c=$2 r=$3 out before=0 after=0
	log "round $r: $name c=$c"
	[[ -n ${pid[$name]:-} ]] && before=$(cpu_ticks "${pid[$name]}")
	out=$(wrk -t1 -c"$c" -d"$DURATION" --latency "http://127.0.0.1:${port[$name]}/bench/")
	[[ -n ${pid[$name]:-} ]] && after=$(cpu_ticks "${pid[$name]}")
	echo "$out" >>"$tmp/wrk.log"
	local rps reqs p50 p99 errs cpu=-
	rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
	reqs=$(awk '/requests in/ {print $1}' <<<"$out")
	p50=$(to_us "$(awk '$1 == "50%" {print $2}' <<<"$out")")
	p99=$(to_us "$(awk '$1 == "99%" {print $2}' <<<"$out")")
	errs=$(awk '/Non-2xx/ {n += $NF} /Socket errors/ {gsub(",", ""); n += $4 + $6 + $8 + $10} END {print n + 0}' <<<"$out")
	if [[ -n ${pid[$name]:-} && ${reqs:-0} -gt 0 ]]; then
		cpu=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$reqs" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')
	fi
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$c" "$r" "$rps" "$p50" "$p99" "$cpu" "$errs" >>"$results"
}

# The warm-up runs at the highest concurrency: connection pools fill, and wolke's
# adaptive concurrency limit learns the load (from its initial 100, or from what a
# lower concurrency needed, it grows by about 20 % per 100 ms window and refuses what
# is over it meanwhile; measured, a step from 64 to 256 connections refused requests
# for about 0.4 s).
warm=0
for c in $CONNS; do warm=$((c > warm ? c : warm)); done
for name in $CONTESTANTS; do
	log "warm-up: $name c=$warm"
	wrk -t1 -c"$warm" -d"$WARMUP" "http://127.0.0.1:${port[$name]}/bench/" >/dev/null
done
for r in $(seq "$ROUNDS"); do
	for c in $CONNS; do
		for name in $CONTESTANTS; do
			round "$name" "$c" "$r"
		done
	done
done

if [[ -n ${RESULTS:-} ]]; then
	cp "$results" "$RESULTS"
fi

# The table: medians per contestant and concurrency (the lower middle of an even count).
echo "| proxy | conns | req/s | p50 | p99 | vs nginx | CPU/req | errors |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
awk -F'\t' -v contestants="$CONTESTANTS" -v conns="$CONNS" -v rounds="$ROUNDS" '
function median(key, col,    n, i, j, t, a) {
	n = 0
	for (i = 1; i <= rounds; i++) if ((key, i) in val) { split(val[key, i], t, "\t"); if (t[col] != "-") a[++n] = t[col] + 0 }
	if (n == 0) return "-"
	for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t[0] = a[j]; a[j] = a[j - 1]; a[j - 1] = t[0] }
	return a[int((n + 1) / 2)]
}
function lat(us) { return us == "-" ? "-" : us >= 1000 ? sprintf("%.2f ms", us / 1000) : sprintf("%d µs", us) }
{ val[$1 "@" $2, $3] = $4 "\t" $5 "\t" $6 "\t" $7 "\t" $8 }
END {
	nc = split(contestants, cs, " "); nn = split(conns, ns, " ")
	for (k = 1; k <= nn; k++) {
		c = ns[k]
		ref = median("nginx@" c, 1)
		for (i = 1; i <= nc; i++) {
			key = cs[i] "@" c
			rps = median(key, 1)
			if (rps == "-") continue
			errs = 0
			for (r = 1; r <= rounds; r++) if ((key, r) in val) { split(val[key, r], t, "\t"); errs += t[5] }
			ratio = (ref != "-" && ref > 0) ? sprintf("%.2f", rps / ref) : "-"
			cpu = median(key, 4)
			printf "| %s | %d | %.0f | %s | %s | %s | %s | %d |\n", cs[i], c, rps, lat(median(key, 2)), lat(median(key, 3)), ratio, cpu == "-" ? "-" : sprintf("%.1f µs", cpu), errs
		}
	}
}' "$results"
log "median of $ROUNDS rounds of $DURATION each; errors are wrk's non-2xx responses and socket errors summed over the rounds"

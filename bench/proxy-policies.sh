#!/usr/bin/env bash
# proxy-policies.sh: what each edge policy costs the gateway. One `wolke proxy` in front
# of two nginx backends (100-byte answers, Cache-Control: public, max-age=3600), and
# for each policy document in turn wrk -t1 -c64 (DURATION, default 10s, ROUNDS
# interleaved, median) with the proxy's CPU time per request from /proc/PID/stat.
# Prints a markdown table. Needs nginx, wrk and python3 (for the test JWT).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
log() { echo "proxy-policies: $*" >&2; }
for t in nginx wrk python3; do command -v $t >/dev/null || { log "needs $t"; exit 1; }; done
tmp=$(mktemp -d)
chmod 755 "$tmp"
pids=()
source "$root/bench/common.sh"
trap cleanup EXIT
clk=$(getconf CLK_TCK)

body=$(printf 'x%.0s' $(seq 99))
backends=()
for i in 1 2; do
	bport=$(free_port)
	mkdir -p "$tmp/b$i"
	cat >"$tmp/b$i/nginx.conf" <<-CONF
		daemon off;
		pid $tmp/b$i/nginx.pid;
		error_log $tmp/b$i.log warn;
		worker_processes 1;
		events { worker_connections 16384; }
		http {
			access_log off;
			keepalive_requests 1000000;
			server {
				listen 127.0.0.1:$bport backlog=4096;
				location / { default_type text/plain; add_header Cache-Control "public, max-age=3600" always; return 200 '$body
		'; }
			}
		}
	CONF
	nginx -p "$tmp/b$i/" -e "$tmp/b$i.log" -c "$tmp/b$i/nginx.conf" >>"$tmp/b$i.log" 2>&1 &
	pids+=($!)
	backends+=("$bport")
done

(cd "$root" && go build -o "$tmp/wolke" ./cmd/wolke)
agent=$(free_port)
"$tmp/wolke" agent -dev -http-addr "127.0.0.1:$agent" -server-port "$(free_port)" -serf-port "$(free_port)" -dns-addr= -log-level warn >"$tmp/agent.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -fsS -X PUT --data x "http://127.0.0.1:$agent/v1/kv/ready" 2>/dev/null | grep -q true && break; sleep 0.1; done
for i in 1 2; do
	curl -fsS -X PUT --data "{\"ID\":\"bench-$i\",\"Name\":\"bench\",\"Address\":\"127.0.0.1\",\"Port\":${backends[i - 1]}}" \
		"http://127.0.0.1:$agent/v1/agent/service/register" >/dev/null
done
# An HS256 key as JWKS, and a token for it.
read -r jwks token < <(python3 - <<'PY'
import base64, hashlib, hmac, json, time
b = lambda x: base64.urlsafe_b64encode(x).rstrip(b"=").decode()
key = b"proxy-policies-benchmark-secret-0123456789"
jwks = json.dumps({"keys": [{"kty": "oct", "kid": "k1", "alg": "HS256", "k": b(key)}]}, separators=(",", ":"))
head = b(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
claims = b(json.dumps({"sub": "bench", "iss": "bench", "aud": "gw", "exp": int(time.time()) + 3600}).encode())
sig = b(hmac.new(key, f"{head}.{claims}".encode(), hashlib.sha256).digest())
print(jwks, f"{head}.{claims}.{sig}")
PY
)
curl -fsS -X PUT --data "$jwks" "http://127.0.0.1:$agent/v1/kv/wolke/gateway/jwks" >/dev/null

listen=$(free_port)
admin=$(free_port)
"$tmp/wolke" proxy -listen "127.0.0.1:$listen" -admin-listen "127.0.0.1:$admin" -http-addr "127.0.0.1:$agent" \
	-access-log=false -log-level warn >/dev/null 2>"$tmp/proxy.log" &
pids+=($!)
ppid=$!
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$admin/v1/proxy/routes" 2>/dev/null | grep -c '"addr"' | grep -qx 4 && break; sleep 0.1; done

jwt='"auth": {"jwt": {"jwks_key": "wolke/gateway/jwks", "issuer": "bench", "audience": ["gw"]}}'
rl='"rate_limit": {"rate": 1e9, "burst": 1000000000, "key": "ip"}'
val='"validation": {"methods": ["GET"], "max_uri_length": 2048, "max_headers": 64}'
declare -A doc hdr
names=(none concurrency rate-limit jwt validation cache-hit all-hit all-miss)
doc[none]='{"concurrency": {"disabled": true}}'
doc[concurrency]='{}'
doc[rate-limit]="{\"concurrency\": {\"disabled\": true}, $rl}"
doc[jwt]="{\"concurrency\": {\"disabled\": true}, $jwt}"
doc[validation]="{\"concurrency\": {\"disabled\": true}, $val}"
doc[cache-hit]='{"concurrency": {"disabled": true}, "cache": {"enabled": true}}'
doc[all-hit]="{$rl, $jwt, $val, \"cache\": {\"enabled\": true}}"
doc[all-miss]=${doc[all-hit]}
# Every run sends the same request, token included, so that the differences are the
# policies' work and not bytes parsed and forwarded.
for n in "${names[@]}"; do hdr[$n]="Authorization: Bearer $token"; done

cpu() { awk '{print $14+$15}' "/proc/$ppid/stat"; }
declare -A results
for round in $(seq "$ROUNDS"); do
	for n in "${names[@]}"; do
		curl -fsS -X PUT --data "${doc[$n]}" "http://127.0.0.1:$agent/v1/kv/wolke/gateway/routes/bench" >/dev/null
		sleep 0.5 # the gateway follows the document within milliseconds; half a second is ample
		args=(-t1 -c64 -d"$DURATION" --latency)
		[[ -n ${hdr[$n]:-} ]] && args+=(-H "${hdr[$n]}")
		[[ $n == all-miss ]] && args+=(-H "Cache-Control: no-cache")
		c0=$(cpu)
		out=$(wrk "${args[@]}" "http://127.0.0.1:$listen/bench/item")
		c1=$(cpu)
		reqs=$(awk '/requests in/{print $1}' <<<"$out")
		non2xx=$(awk '/Non-2xx/{print $5}' <<<"$out")
		rps=$(awk '/Requests\/sec/{print $2}' <<<"$out")
		p99=$(awk '$1=="99%"{print $2}' <<<"$out")
		us=$(echo "($c1 - $c0) * 1000000 / $clk / $reqs" | bc -l)
		results[$n]+="$rps $p99 $us ${non2xx:-0};"
		log "round $round $n: $rps req/s, p99 $p99, $(printf %.1f "$us") µs CPU/request, non-2xx ${non2xx:-0}"
	done
done
echo "| policy | req/s | p99 | CPU µs/request | non-2xx |"
echo "|---|--:|--:|--:|--:|"
for n in "${names[@]}"; do
	# the median round by CPU per request
	IFS=';' read -ra rs <<<"${results[$n]}"
	med=$(printf '%s\n' "${rs[@]}" | sort -k3 -g | sed -n "$(((${#rs[@]} + 1) / 2))p")
	read -r rps p99 us bad <<<"$med"
	printf '| %s | %s | %s | %.1f | %s |\n' "$n" "$rps" "$p99" "$us" "$bad"
done

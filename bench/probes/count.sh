#!/bin/sh
# count.sh EMBER LOAD_SECONDS: starts `EMBER serve` on a fresh data dir,
# deploys slow_model.py, calls it once (a cold start that waits for the
# load) and prints how many GET /health lines the instance wrote.
set -eu
ember=$1 load=$2
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d)
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
"$ember" serve --addr 127.0.0.1:$port --data-dir "$dir" >"$dir/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
until [ -s "$dir/admin.key" ] && curl -sf http://127.0.0.1:$port/healthz >/dev/null; do sleep 0.1; done
key=$(cat "$dir/admin.key")
printf 'name: slow\ncommand: [python3, %s/slow_model.py]\nenv: {LOAD_SECONDS: "%s"}\nstart_timeout: 5m\n' "$here" "$load" |
	curl -sf -H "Authorization: Bearer $key" --data-binary @- http://127.0.0.1:$port/v1/functions >/dev/null
t0=$(date +%s.%N)
curl -s -o /dev/null -w '%{http_code} ' -H "Authorization: Bearer $key" -X POST http://127.0.0.1:$port/v1/run/slow/predict -d '{}'
t1=$(date +%s.%N)
n=$(cat "$dir"/logs/slow/*.log | grep -c 'GET /health')
echo "load ${load}s: $n probe lines, call took $(echo "$t1 - $t0" | bc)s"

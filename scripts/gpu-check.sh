#!/usr/bin/env bash
# The GPU check on a machine with an NVIDIA GPU and its driver: the real
# inventory (nvidia-smi), a GPU process function that sees its GPU as
# CUDA_VISIBLE_DEVICES, a second one refused while the GPU is held, a GPU type
# the machine lacks refused at deploy, and, where python3 has CUDA torch, a
# function that multiplies matrices on its GPU. Build first (static, so the
# binaries run on any Linux GPU host):
#   CGO_ENABLED=0 go build -o bin/ember ./cmd/ember
#   CGO_ENABLED=0 go build -o bin/sim ./examples/sim
#   scripts/gpu-check.sh
set -u
B=${EMBER_BIN:-$(cd "$(dirname "$0")/../bin" && pwd)}
D=$(mktemp -d)
echo "== nvidia-smi query"; nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader,nounits
UUID=$(nvidia-smi --query-gpu=uuid --format=csv,noheader | head -1)
echo "== python/torch"; python3 -c "import torch,sys;print('torch',torch.__version__,torch.cuda.is_available())" 2>&1 | tail -1
"$B/ember" serve --data-dir "$D" --addr 127.0.0.1:18080 >"$D/serve.log" 2>&1 &
SP=$!
for i in $(seq 100); do curl -fs 127.0.0.1:18080/readyz >/dev/null 2>&1 && break; sleep 0.1; done
grep -i "gpu" "$D/serve.log" | head -5
export EMBER_SERVER=http://127.0.0.1:18080 EMBER_DATA_DIR=$D
cat >"$D/g1.yaml" <<Y
name: g1
command: ["$B/sim"]
scaling: {min: 0, max: 1}
resources: {gpu: {type: h200-141gb, count: 1}}
Y
sed 's/name: g1/name: g2/' "$D/g1.yaml" > "$D/g2.yaml"
sed 's/h200-141gb/h100-80gb/; s/name: g1/name: g3/' "$D/g1.yaml" > "$D/g3.yaml"
echo "== deploy g1"; "$B/ember" deploy "$D/g1.yaml"
echo "== deploy h100 (want refused)"; "$B/ember" deploy "$D/g3.yaml"; echo "exit=$?"
KEY=$(cat "$D/admin.key")
echo "== call g1 (cold)"; curl -s -D - -H "Authorization: Bearer $KEY" -X POST 127.0.0.1:18080/v1/run/g1/whoami -d '{}' | tr ',' '\n' | grep -E "CUDA|Server-Timing|HTTP/" 
echo "== real UUID: $UUID"
echo "== deploy g2 and call (want no free GPU)"; "$B/ember" deploy "$D/g2.yaml"; curl -s -H "Authorization: Bearer $KEY" -X POST 127.0.0.1:18080/v1/run/g2 -d '{}' -w ' status=%{http_code}\n' | cut -c1-400
if python3 -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
cat >"$D/t.py" <<P
import os, http.server, torch
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self): self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def do_POST(self):
        a=torch.randn(2048,2048,device="cuda"); s=float((a@a).sum())
        b=("%s %s %s %s"%(os.environ.get("CUDA_VISIBLE_DEVICES"),torch.cuda.device_count(),torch.cuda.get_device_name(0),s)).encode()
        self.send_response(200); self.end_headers(); self.wfile.write(b)
http.server.HTTPServer(("127.0.0.1",int(os.environ["PORT"])),H).serve_forever()
P
cat >"$D/t.yaml" <<Y
name: torchfn
command: ["python3", "$D/t.py"]
health: {path: /}
scaling: {min: 0, max: 1}
start_timeout: 120s
resources: {gpu: {type: h200-141gb, count: 1}}
Y
"$B/ember" rm g1 >/dev/null 2>&1; "$B/ember" rm g2 >/dev/null 2>&1
sleep 3; echo "== torch function"; "$B/ember" deploy "$D/t.yaml"; curl -s -H "Authorization: Bearer $KEY" -X POST 127.0.0.1:18080/v1/run/torchfn -d '{}' -w ' status=%{http_code} time=%{time_total}\n'
curl -s -H "Authorization: Bearer $KEY" -X POST 127.0.0.1:18080/v1/run/torchfn -d '{}' -w ' status=%{http_code} time=%{time_total}\n'
fi
"$B/ember" ls 2>&1 | head
kill $SP; wait $SP 2>/dev/null
echo "== serve log tail"; tail -5 "$D/serve.log"

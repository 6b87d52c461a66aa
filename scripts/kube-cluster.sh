#!/usr/bin/env bash
# A real single-node Kubernetes cluster for Ember's Kubernetes tests, all of
# it under one directory and bound to 127.0.0.1: etcd (Debian etcd-server),
# kube-apiserver, kube-controller-manager, kube-scheduler and kubelet (built
# and cached by scripts/kube-binaries.sh), containerd (Debian) with runc and
# a loopback-only CNI (Debian containernetworking-plugins). Pods run with
# hostNetwork: true; images are built locally (scripts/ociimage) and
# imported into containerd, no registry needed.
#
#   scripts/kube-cluster.sh start DIR   start (idempotent), wait for the node to be Ready, print the env
#   scripts/kube-cluster.sh env DIR     print the env of a started cluster:
#                                       eval "$(scripts/kube-cluster.sh env DIR)"
#   scripts/kube-cluster.sh stop DIR    stop everything start started, remove the Pods' containers
#   scripts/kube-cluster.sh image DIR NAME PKG
#                                       build the Go package PKG static (CGO_ENABLED=0) and import it
#                                       into the cluster's containerd as image NAME, e.g.
#                                       ember-sim:dev ./examples/sim or ember:dev ./cmd/ember
#
#   EMBER_KUBE_PORT_BASE  first of the 7 TCP ports used (default: derived from DIR, in 20000-29999,
#                         so clusters in different directories do not collide)
#   EMBER_KUBE_BIN        Kubernetes bin dir (default: scripts/kube-binaries.sh's, which builds if needed)
#   EMBER_KUBE_TIMEOUT    seconds to wait for each component (default 60)
#
# Needs root (kubelet, containerd), etcd, containerd, runc, ctr, openssl,
# curl and go (kubectl is optional: the KUBECONFIG printed works with it).
# Paths under DIR must stay short (unix sockets).
set -euo pipefail

usage() { echo "usage: $0 start|stop|env DIR | image DIR NAME PKG" >&2; exit 2; }
[[ $# -eq 2 || ($# -eq 4 && $1 == image) ]] || usage
cmd=$1
mkdir -p "$2"
dir=$(cd "$2" && pwd)
repo=$(cd "$(dirname "$0")/.." && pwd)
timeout=${EMBER_KUBE_TIMEOUT:-60}
# The node is named localhost: the API server reaches the kubelet (logs,
# exec) by the node's hostname, which must resolve to where the kubelet
# listens, 127.0.0.1 (the kubelet refuses a loopback node IP, so the node's
# InternalIP is the host's).
node=localhost

if [[ -n ${EMBER_KUBE_PORT_BASE:-} ]]; then
	base=$EMBER_KUBE_PORT_BASE
else
	sum=$(printf %s "$dir" | cksum | cut -d' ' -f1)
	base=$((20000 + (sum % 500) * 20))
fi
api_port=$base
etcd_port=$((base + 1))
etcd_peer=$((base + 2))
cm_port=$((base + 3))
sched_port=$((base + 4))
kubelet_port=$((base + 5))
kubelet_health=$((base + 6))

pki=$dir/pki
logs=$dir/logs
pids=$dir/pids
sock=$dir/containerd.sock

log() { echo "kube-cluster: $*" >&2; }

print_env() {
	echo "export KUBECONFIG=$dir/kubeconfig"
	echo "export EMBER_TEST_KUBECONFIG=$dir/kubeconfig"
	echo "export EMBER_TEST_CONTAINERD=$sock"
}

alive() { [[ -f $pids/$1.pid ]] && kill -0 "$(cat "$pids/$1.pid")" 2>/dev/null; }

# run NAME CMD...: starts CMD in its own session unless NAME already runs,
# logging to logs/NAME.log.
run() {
	local name=$1
	shift
	if alive "$name"; then return; fi
	# From the cluster directory: a daemon must not keep (or need) the
	# caller's working directory, which may be a checkout that goes away.
	(cd "$dir" && exec setsid "$@" >"$logs/$name.log" 2>&1 </dev/null) &
	echo $! >"$pids/$name.pid"
}

# wait_for NAME CHECK...: polls CHECK until it succeeds; after the timeout
# (or if NAME's process died) fails with the tail of NAME's log.
wait_for() {
	local name=$1
	shift
	local deadline=$((SECONDS + timeout))
	until "$@" >/dev/null 2>&1; do
		if ! alive "$name" || ((SECONDS >= deadline)); then
			if alive "$name"; then
				log "$name not ready after ${timeout}s; last lines of $logs/$name.log:"
			else
				log "$name exited; last lines of $logs/$name.log:"
			fi
			tail -n 30 "$logs/$name.log" >&2 || true
			exit 1
		fi
		sleep 0.1
	done
}

token() { head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# kubeconfig FILE USER-TOKEN
kubeconfig() {
	cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: ember
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority: $pki/ca.crt
users:
- name: user
  user:
    token: $2
contexts:
- name: ember
  context: {cluster: ember, user: user}
current-context: ember
EOF
	chmod 0600 "$1"
}

# cert NAME SUBJECT EXTENSIONS: a P-256 key and a certificate signed by the CA.
cert() {
	openssl ecparam -name prime256v1 -genkey -noout -out "$pki/$1.key" 2>/dev/null
	openssl req -new -key "$pki/$1.key" -subj "$2" 2>/dev/null |
		openssl x509 -req -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial -days 3650 \
			-extfile <(printf '%b' "$3") -out "$pki/$1.crt" 2>/dev/null
}

setup_pki() {
	[[ -f $pki/done ]] && return
	mkdir -p "$pki"
	chmod 0700 "$pki"
	openssl ecparam -name prime256v1 -genkey -noout -out "$pki/ca.key" 2>/dev/null
	openssl req -x509 -new -key "$pki/ca.key" -subj /CN=ember-kube-ca -days 3650 \
		-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign,digitalSignature \
		-out "$pki/ca.crt" 2>/dev/null
	cert apiserver /CN=kube-apiserver \
		"subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment"
	cert kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" \
		"extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment"
	# Service-account tokens are signed with this key (ES256).
	openssl ecparam -name prime256v1 -genkey -noout -out "$pki/sa.key" 2>/dev/null
	openssl ec -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
	local admin kubelet cm sched
	admin=$(token) kubelet=$(token) cm=$(token) sched=$(token)
	# token,user,uid,"groups": the admin is in system:masters; the others get
	# the identities Kubernetes' bootstrap RBAC (and the Node authorizer) grant.
	cat >"$pki/tokens.csv" <<EOF
$admin,admin,admin,"system:masters"
$kubelet,system:node:$node,kubelet,"system:nodes"
$cm,system:kube-controller-manager,kube-controller-manager,
$sched,system:kube-scheduler,kube-scheduler,
EOF
	chmod 0600 "$pki/tokens.csv"
	kubeconfig "$dir/kubeconfig" "$admin"
	kubeconfig "$pki/kubelet.kubeconfig" "$kubelet"
	kubeconfig "$pki/controller-manager.kubeconfig" "$cm"
	kubeconfig "$pki/scheduler.kubeconfig" "$sched"
	touch "$pki/done"
}

# ociimage NAME PKG: builds PKG static and imports it as image NAME, the
# binary its only file and entrypoint.
ociimage() {
	local name=$1 pkg=$2 out=$dir/images/$(basename "$2")
	mkdir -p "$dir/images"
	if [[ ! -x $dir/images/ociimage ]]; then
		(cd "$repo" && go build -o "$dir/images/ociimage" ./scripts/ociimage)
	fi
	(cd "$repo" && CGO_ENABLED=0 go build -trimpath -o "$out" "$pkg")
	"$dir/images/ociimage" -name "$name" -add "$out:/$(basename "$pkg"):0755" -entrypoint "/$(basename "$pkg")" \
		-o "$out.tar" -containerd "$sock" >/dev/null
}

setup_containerd() {
	mkdir -p "$dir/containerd" "$dir/cni/net.d"
	cat >"$dir/cni/net.d/10-loopback.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "loopback", "plugins": [{"type": "loopback"}]}
EOF
	cat >"$dir/containerd/config.toml" <<EOF
version = 2
root = "$dir/containerd/root"
state = "$dir/containerd/state"
plugin_dir = ""
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]

[grpc]
  address = "$sock"

[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/library/ember-pause:dev"
  # The sandbox lacks CAP_SYS_RESOURCE: without this, creating a Pod's
  # sandbox fails with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni/net.d"
EOF
}

setup_kubelet() {
	mkdir -p "$dir/kubelet/root" "$dir/kubelet/pod-logs" "$dir/kubelet/pki"
	cat >"$dir/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: $kubelet_port
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $kubelet_health
containerRuntimeEndpoint: unix://$sock
podLogsDir: $dir/kubelet/pod-logs
# This host has cgroup v1, no systemd and no CAP_SYS_RESOURCE in the sandbox.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
# The images exist only locally: never garbage-collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "2%"
  imagefs.available: "2%"
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization:
  mode: Webhook
serializeImagePulls: false
resolvConf: /etc/resolv.conf
EOF
}

start() {
	local t0=$SECONDS start_ns
	start_ns=$(date +%s%N)
	local bin=${EMBER_KUBE_BIN:-}
	if [[ -z $bin ]]; then bin=$("$repo/scripts/kube-binaries.sh" | tail -n 1); fi
	for t in kube-apiserver kube-controller-manager kube-scheduler kubelet; do
		[[ -x $bin/$t ]] || { log "$bin/$t missing (scripts/kube-binaries.sh builds it)"; exit 1; }
	done
	for t in etcd containerd runc ctr openssl curl go; do
		command -v "$t" >/dev/null || { log "$t not found (apt-get install etcd-server containerd runc openssl curl)"; exit 1; }
	done
	[[ -x /usr/lib/cni/loopback ]] || { log "/usr/lib/cni/loopback missing (apt-get install containernetworking-plugins)"; exit 1; }
	mkdir -p "$logs" "$pids"
	setup_pki

	run etcd etcd --name ember --data-dir "$dir/etcd" \
		--listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
		--listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
		--initial-cluster "ember=http://127.0.0.1:$etcd_peer" --unsafe-no-fsync
	setup_containerd
	run containerd containerd --config "$dir/containerd/config.toml"
	wait_for etcd curl -fsS "http://127.0.0.1:$etcd_port/health"

	# --watch-cache=false: with Debian's etcd 3.4 (no watch progress
	# requests) the watch cache refuses watches and lists at a recent
	# resourceVersion ("Too large resource version"); served from etcd
	# directly they work.
	run kube-apiserver "$bin/kube-apiserver" \
		--etcd-servers "http://127.0.0.1:$etcd_port" \
		--bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
		--endpoint-reconciler-type none \
		--tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
		--client-ca-file "$pki/ca.crt" --token-auth-file "$pki/tokens.csv" \
		--authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
		--service-account-issuer https://kubernetes.default.svc.cluster.local \
		--service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
		--service-cluster-ip-range 10.96.0.0/16 \
		--kubelet-preferred-address-types Hostname,InternalIP \
		--kubelet-client-certificate "$pki/kubelet-client.crt" --kubelet-client-key "$pki/kubelet-client.key" \
		--cert-dir "$pki/apiserver-generated" --profiling=false \
		--watch-cache=false
	wait_for containerd ctr --address "$sock" version
	# The sandbox image, built here: no registry to pull one from.
	local images
	images=$(ctr --address "$sock" -n k8s.io images ls -q)
	if ! grep -qx docker.io/library/ember-pause:dev <<<"$images"; then
		ociimage ember-pause:dev ./scripts/pause
	fi
	wait_for kube-apiserver api /readyz

	run kube-controller-manager "$bin/kube-controller-manager" \
		--kubeconfig "$pki/controller-manager.kubeconfig" \
		--authentication-kubeconfig "$pki/controller-manager.kubeconfig" \
		--authorization-kubeconfig "$pki/controller-manager.kubeconfig" \
		--bind-address 127.0.0.1 --secure-port "$cm_port" --leader-elect=false \
		--controllers '*,-nodeipam' --use-service-account-credentials \
		--service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
		--cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
		--cert-dir "$pki/cm-generated" --profiling=false
	run kube-scheduler "$bin/kube-scheduler" \
		--kubeconfig "$pki/scheduler.kubeconfig" \
		--authentication-kubeconfig "$pki/scheduler.kubeconfig" \
		--authorization-kubeconfig "$pki/scheduler.kubeconfig" \
		--bind-address 127.0.0.1 --secure-port "$sched_port" --leader-elect=false \
		--cert-dir "$pki/sched-generated" --profiling=false
	setup_kubelet
	run kubelet "$bin/kubelet" --config "$dir/kubelet/config.yaml" \
		--kubeconfig "$pki/kubelet.kubeconfig" --root-dir "$dir/kubelet/root" \
		--cert-dir "$dir/kubelet/pki" --hostname-override "$node"
	wait_for kube-controller-manager curl -fsSk "https://127.0.0.1:$cm_port/healthz"
	wait_for kube-scheduler curl -fsSk "https://127.0.0.1:$sched_port/healthz"
	wait_for kubelet curl -fsS "http://127.0.0.1:$kubelet_health/healthz"
	wait_for kubelet node_ready
	# Pods need the namespace's default ServiceAccount, which the
	# controller-manager creates.
	wait_for kube-controller-manager api /api/v1/namespaces/default/serviceaccounts/default
	log "cluster in $dir ready in $((($(date +%s%N) - start_ns) / 1000000)) ms (ports $base-$kubelet_health)"
	print_env
}

# api PATH: GET PATH from the API server as the admin.
api() {
	curl -fsS --cacert "$pki/ca.crt" -H "Authorization: Bearer $(awk -F, '$2=="admin"{print $1}' "$pki/tokens.csv")" \
		"https://127.0.0.1:$api_port$1"
}

# The API server writes a condition's fields in order, type before status
# (indented: hence the tr).
node_ready() { api "/api/v1/nodes/$node" | tr -d ' \n' | grep -q '"type":"Ready","status":"True"'; }

stop_one() {
	local name=$1
	if alive "$name"; then
		local pid
		pid=$(cat "$pids/$name.pid")
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$pids/$name.pid"
}

stop() {
	stop_one kubelet
	# The Pods' containers outlive the kubelet (their shims are not its
	# children): kill and remove them while containerd still runs.
	if alive containerd; then
		local c
		for c in $(ctr --address "$sock" -n k8s.io containers ls -q 2>/dev/null); do
			ctr --address "$sock" -n k8s.io tasks kill -s SIGKILL "$c" >/dev/null 2>&1 || true
		done
		for c in $(ctr --address "$sock" -n k8s.io containers ls -q 2>/dev/null); do
			for _ in $(seq 50); do
				ctr --address "$sock" -n k8s.io tasks delete "$c" >/dev/null 2>&1 && break
				ctr --address "$sock" -n k8s.io tasks ls -q 2>/dev/null | grep -qx "$c" || break
				sleep 0.1
			done
			ctr --address "$sock" -n k8s.io containers delete "$c" >/dev/null 2>&1 || true
		done
	fi
	local name
	for name in kube-scheduler kube-controller-manager kube-apiserver containerd etcd; do stop_one "$name"; done
	# The kubelet's volume mounts (service-account tokens are tmpfs).
	awk -v d="$dir/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
	done
	log "stopped the cluster in $dir"
}

case $cmd in
start) start ;;
stop) stop ;;
env)
	[[ -f $dir/kubeconfig ]] || { log "no cluster in $dir ($0 start $dir)"; exit 1; }
	print_env
	;;
image)
	alive containerd || { log "no containerd running in $dir ($0 start $dir)"; exit 1; }
	ociimage "$3" "$4"
	log "imported $3 ($4)"
	;;
*) usage ;;
esac

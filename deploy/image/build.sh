#!/usr/bin/env bash
# Build Ember's own image without a registry.
#
#   deploy/image/build.sh static TAG            # podman build: FROM scratch + static ember
#   deploy/image/build.sh worker TAG            # the ONNX worker variant (cgo ember + ONNX Runtime)
#   deploy/image/build.sh static TAG --oci OUT.tar [--containerd SOCK]
#                                               # an OCI tarball (scripts/ociimage), imported
#                                               # into a node's containerd when SOCK is given
#   ... --binary PATH                           # package a prebuilt ember (worker: a cgo build)
#
# static: CGO_ENABLED=0, so the image is one binary and the CA bundle; it
# runs `ember serve|gateway|controller` and process/container functions.
# worker: `ember worker onnx` needs cgo and ONNX Runtime's shared library;
# the image carries the glibc loader and exactly the libraries ldd names
# (no Debian base image), plus libonnxruntime.so from $ORT_LIB (default:
# the one `ember` fetched into ~/.cache/ember). See deploy/image/README.md.
set -euo pipefail
mode=${1:-}; tag=${2:-}
[[ ($mode == static || $mode == worker) && -n $tag ]] || { sed -n 2,16p "$0" >&2; exit 2; }
shift 2
oci= sock= binary=
while [[ $# -gt 0 ]]; do
	case $1 in
	--oci) oci=$2; shift 2 ;;
	--containerd) sock=$2; shift 2 ;;
	--binary) binary=$2; shift 2 ;;
	*) echo "unknown argument $1" >&2; exit 2 ;;
	esac
done
repo=$(cd "$(dirname "$0")/../.." && pwd)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/rootfs
mkdir -p "$root/etc/ssl/certs"
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
env=(HOME=/data EMBER_DATA_DIR=/data/ember EMBER_CACHE_DIR=/data/cache EMBER_ADDR=0.0.0.0:8080
	SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt)

if [[ -n $binary ]]; then
	cp "$binary" "$root/ember"
	chmod 0755 "$root/ember"
elif [[ $mode == static ]]; then
	(cd "$repo" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$root/ember" ./cmd/ember)
else
	(cd "$repo" && CGO_ENABLED=1 go build -trimpath -ldflags '-s -w' -o "$root/ember" ./cmd/ember)
fi
if [[ $mode == worker ]]; then
	ort=${ORT_LIB:-$(find "${XDG_CACHE_HOME:-$HOME/.cache}/ember/blobs" -path '*linux/x64/libonnxruntime.so*' -type f 2>/dev/null | head -1)}
	[[ -f $ort ]] || { echo "ONNX Runtime library not found: set ORT_LIB (run any onnx function once to fetch it)" >&2; exit 1; }
	mkdir -p "$root/lib/ember"
	cp "$ort" "$root/lib/ember/libonnxruntime.so"
	# The loader and every library the binary and the runtime link, at
	# the paths the loader looks them up.
	for lib in $(ldd "$root/ember" "$ort" | awk '/=>/ {print $3} /^\t\// {print $1}' | sort -u); do
		mkdir -p "$root$(dirname "$lib")"
		cp -L "$lib" "$root$lib"
	done
	env+=(EMBER_ORT_LIB=/lib/ember/libonnxruntime.so)
fi

if [[ -z $oci ]]; then
	cp "$repo/deploy/image/Containerfile" "$stage/Containerfile"
	if [[ $mode == worker ]]; then
		echo 'ENV EMBER_ORT_LIB=/lib/ember/libonnxruntime.so' >>"$stage/Containerfile"
	fi
	podman build -t "$tag" "$stage"
	exit 0
fi
# OCI tarball: every staged file with its mode.
args=()
while IFS= read -r f; do
	rel=${f#"$root"}
	args+=(-add "$f:$rel:$(stat -c %a "$f")")
done < <(find "$root" -type f)
for e in "${env[@]}"; do args+=(-env "$e"); done
[[ -n $sock ]] && args+=(-containerd "$sock")
(cd "$repo" && go run ./scripts/ociimage -name "$tag" -o "$oci" -entrypoint /ember "${args[@]}")

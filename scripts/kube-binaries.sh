#!/usr/bin/env bash
# Builds the Kubernetes control-plane and node binaries the Kubernetes e2e
# tests run (kube-apiserver, kube-controller-manager, kube-scheduler,
# kubelet), and kubectl for the manifest tests, from the Go module proxy, in a
# tools module of their own (never Ember's go.mod), and caches them outside
# the checkout, keyed by version:
#
#   $EMBER_KUBE_CACHE/<version>/bin   (default ~/.cache/ember-kube)
#
# A second run with the binaries present does nothing. Prints the bin
# directory on its last line. A cold build takes about 12-15 minutes and
# 2.5 GB of memory on 2 cores.
set -euo pipefail

version=${EMBER_KUBE_VERSION:-v1.37.2}
cache=${EMBER_KUBE_CACHE:-$HOME/.cache/ember-kube}
dir=$cache/$version
bin=$dir/bin
tools="kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl"

have=1
for t in $tools; do [[ -x $bin/$t ]] || have=0; done
if [[ $have == 1 ]]; then
	echo "$bin"
	exit 0
fi

staging=(api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider
	cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api
	cri-client cri-streaming csi-translation-lib dynamic-resource-allocation endpointslice externaljwt
	kms kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics
	mount-utils pod-security-admission sample-apiserver streaming)
minor=${version#v1.}
minor=${minor%%.*}
patch=${version##*.}
stagever=v0.$minor.$patch

mod=$dir/src
mkdir -p "$mod" "$bin"
cd "$mod"
{
	echo "module ember.local/kubetools"
	echo
	echo "go 1.26"
	echo
	echo "require k8s.io/kubernetes $version"
	echo
	for s in "${staging[@]}"; do echo "replace k8s.io/$s => k8s.io/$s $stagever"; done
} >go.mod
cat >tools.go <<'GO'
//go:build tools

package kubetools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
echo "kube-binaries: resolving k8s.io/kubernetes $version modules" >&2
GOFLAGS=-mod=mod go mod tidy -e >&2 2>&1 || true
GOFLAGS=-mod=mod go mod download >&2

ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
for t in $tools; do
	[[ -x $bin/$t ]] && continue
	echo "kube-binaries: building $t $version" >&2
	start=$(date +%s)
	GOFLAGS=-mod=mod CGO_ENABLED=0 go build -tags tools -ldflags "$ldflags" -o "$bin/$t.tmp" "k8s.io/kubernetes/cmd/$t"
	mv "$bin/$t.tmp" "$bin/$t"
	echo "kube-binaries: $t built in $(($(date +%s) - start)) s" >&2
done
echo "$bin"

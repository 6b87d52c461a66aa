// Command pause is the sandbox ("pause") image of the test cluster that
// scripts/kube-cluster.sh starts: containerd runs it as every Pod's
// sandbox container. It holds the Pod's namespaces by doing nothing until
// SIGTERM or SIGINT. Built static (CGO_ENABLED=0) into an image of its own
// by scripts/ociimage, since no registry is reachable to pull one.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}

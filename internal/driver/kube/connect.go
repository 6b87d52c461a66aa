// Package kube runs Ember's instances as Kubernetes Pods (client-go).
package kube

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// namespaceFile is where a Pod's service account token mount says which
// namespace the Pod runs in.
const namespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// Connect builds a clientset for the cluster: kubeconfig if set, else the
// in-cluster config (Ember running in a Pod), else $KUBECONFIG or
// ~/.kube/config. namespace "" resolves to the Pod's own namespace, the
// kubeconfig context's, or "default".
func Connect(kubeconfig, namespace string) (kubernetes.Interface, *rest.Config, string, error) {
	var (
		cfg *rest.Config
		err error
		ns  string
	)
	if kubeconfig == "" {
		cfg, err = rest.InClusterConfig()
		if err == nil {
			if b, rerr := os.ReadFile(namespaceFile); rerr == nil {
				ns = strings.TrimSpace(string(b))
			}
		} else if !errors.Is(err, rest.ErrNotInCluster) {
			return nil, nil, "", fmt.Errorf("in-cluster config: %w", err)
		}
	}
	if cfg == nil {
		rules := clientcmd.NewDefaultClientConfigLoadingRules()
		if kubeconfig != "" {
			rules.ExplicitPath = kubeconfig
		}
		cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{})
		cfg, err = cc.ClientConfig()
		if err != nil {
			return nil, nil, "", fmt.Errorf("kubeconfig: %w", err)
		}
		if n, _, nerr := cc.Namespace(); nerr == nil {
			ns = n
		}
	}
	// client-go's default of 5 requests/s (burst 10) throttles a burst of
	// cold starts (a start is ~6 requests: Secret, Pod, owner, watch,
	// log) by seconds; the API server's own priority and fairness is
	// the limit that matters. kube-controller-manager's defaults.
	if cfg.QPS == 0 {
		cfg.QPS, cfg.Burst = 50, 100
	}
	if namespace != "" {
		ns = namespace
	}
	if ns == "" {
		ns = "default"
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, "", fmt.Errorf("kubernetes client: %w", err)
	}
	return cs, cfg, ns, nil
}

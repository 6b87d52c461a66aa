// Package kubernetes holds Ember's Kubernetes manifests (kustomize); this
// test builds them with `kubectl kustomize` and checks what must hold:
// no credential in them, least-privilege RBAC, resources, probes and a
// locked-down securityContext on every container.
package kubernetes

import (
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

type objects struct {
	kinds       map[string]int
	deployments map[string]appsv1.Deployment
	roles       map[string]rbacv1.Role
	bindings    []rbacv1.RoleBinding
	pdbs        []policyv1.PodDisruptionBudget
	services    []corev1.Service
	configMaps  []corev1.ConfigMap
	raw         string
}

func kustomize(t *testing.T, dir string) objects {
	t.Helper()
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not installed: the manifests are checked with `kubectl kustomize`")
	}
	out, err := exec.Command(kubectl, "kustomize", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, out)
	}
	o := objects{kinds: map[string]int{}, deployments: map[string]appsv1.Deployment{}, roles: map[string]rbacv1.Role{}, raw: string(out)}
	for _, doc := range strings.Split(string(out), "\n---\n") {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatalf("%v in\n%s", err, doc)
		}
		o.kinds[meta.Kind]++
		var err error
		switch meta.Kind {
		case "Deployment":
			var d appsv1.Deployment
			err = yaml.UnmarshalStrict([]byte(doc), &d)
			o.deployments[d.Name] = d
		case "Role":
			var r rbacv1.Role
			err = yaml.UnmarshalStrict([]byte(doc), &r)
			o.roles[r.Name] = r
		case "RoleBinding":
			var b rbacv1.RoleBinding
			err = yaml.UnmarshalStrict([]byte(doc), &b)
			o.bindings = append(o.bindings, b)
		case "PodDisruptionBudget":
			var p policyv1.PodDisruptionBudget
			err = yaml.UnmarshalStrict([]byte(doc), &p)
			o.pdbs = append(o.pdbs, p)
		case "Service":
			var s corev1.Service
			err = yaml.UnmarshalStrict([]byte(doc), &s)
			o.services = append(o.services, s)
		case "ConfigMap":
			var c corev1.ConfigMap
			err = yaml.UnmarshalStrict([]byte(doc), &c)
			o.configMaps = append(o.configMaps, c)
		}
		if err != nil {
			t.Fatalf("%s: %v", meta.Kind, err)
		}
	}
	return o
}

func TestManifests(t *testing.T) {
	o := kustomize(t, ".")
	for kind, want := range map[string]int{"Namespace": 1, "ServiceAccount": 2, "Role": 2, "RoleBinding": 2,
		"Deployment": 2, "Service": 1, "PodDisruptionBudget": 2, "ConfigMap": 1, "Secret": 0, "ClusterRole": 0, "ClusterRoleBinding": 0} {
		if o.kinds[kind] != want {
			t.Errorf("%d objects of kind %s, want %d", o.kinds[kind], kind, want)
		}
	}
	// No credential in any manifest: a key, a DSN with a password, a token.
	for _, bad := range []string{"ember_", "postgres://", "password"} {
		if strings.Contains(o.raw, bad) {
			t.Errorf("the manifests contain %q", bad)
		}
	}
	for _, name := range []string{"ember-gateway", "ember-controller"} {
		d, ok := o.deployments[name]
		if !ok {
			t.Fatalf("no Deployment %s", name)
		}
		if d.Namespace != "ember" || d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
			t.Errorf("%s: namespace %q, replicas %v; want ember and 2", name, d.Namespace, d.Spec.Replicas)
		}
		checkPod(t, name, d.Spec.Template.Spec)
		if !slices.ContainsFunc(o.pdbs, func(p policyv1.PodDisruptionBudget) bool {
			return matches(p.Spec.Selector.MatchLabels, d.Spec.Template.Labels) && p.Spec.MinAvailable != nil && p.Spec.MinAvailable.IntValue() == 1
		}) {
			t.Errorf("%s: no PodDisruptionBudget keeps one of its Pods", name)
		}
	}
	if len(o.services) != 1 || !matches(o.services[0].Spec.Selector, o.deployments["ember-gateway"].Spec.Template.Labels) ||
		matches(o.services[0].Spec.Selector, o.deployments["ember-controller"].Spec.Template.Labels) {
		t.Errorf("the Service must select the gateways and only them: %+v", o.services)
	}

	// RBAC: exactly these rules, nothing wider.
	type rule struct{ group, resource, names, verbs string }
	flatten := func(r rbacv1.Role) []rule {
		var out []rule
		for _, p := range r.Rules {
			for _, g := range p.APIGroups {
				for _, res := range p.Resources {
					out = append(out, rule{g, res, strings.Join(p.ResourceNames, ","), strings.Join(p.Verbs, ",")})
				}
			}
		}
		return out
	}
	want := map[string][]rule{
		"ember-gateway": {{"coordination.k8s.io", "leases", "ember-controller", "get"}},
		"ember-controller": {
			{"", "pods", "", "create,delete,get,list,watch"},
			{"", "pods/log", "", "get"},
			{"", "secrets", "", "create,delete,get,list,watch"},
			{"coordination.k8s.io", "leases", "", "create"},
			{"coordination.k8s.io", "leases", "ember-controller", "get,update"},
		},
	}
	for name, rules := range want {
		r, ok := o.roles[name]
		if !ok {
			t.Fatalf("no Role %s", name)
		}
		if got := flatten(r); !slices.Equal(got, rules) {
			t.Errorf("Role %s rules:\n got %v\nwant %v", name, got, rules)
		}
		bound := slices.ContainsFunc(o.bindings, func(b rbacv1.RoleBinding) bool {
			return b.RoleRef.Kind == "Role" && b.RoleRef.Name == name && len(b.Subjects) == 1 &&
				b.Subjects[0].Kind == "ServiceAccount" && b.Subjects[0].Name == name
		})
		if !bound {
			t.Errorf("Role %s is not bound to exactly ServiceAccount %s", name, name)
		}
		if o.deployments[name].Spec.Template.Spec.ServiceAccountName != name {
			t.Errorf("Deployment %s does not run as ServiceAccount %s", name, name)
		}
	}
	// The data dir must be one Ember creates inside a writable volume: an
	// emptyDir itself is root-owned and open to all, which Ember refuses
	// (it cannot make it private) under a non-root uid.
	dataDir := o.configMaps[0].Data["EMBER_DATA_DIR"]
	for name, d := range o.deployments {
		c := d.Spec.Template.Spec.Containers[0]
		if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
			return strings.HasPrefix(dataDir, strings.TrimSuffix(m.MountPath, "/")+"/") && !m.ReadOnly
		}) {
			t.Errorf("%s: EMBER_DATA_DIR %q is not a subdirectory of a writable mount", name, dataDir)
		}
	}
	if s := o.configMaps[0].Data["EMBER_KUBE_NETWORK"]; s != "pod" {
		t.Errorf("EMBER_KUBE_NETWORK = %q, want pod (the default)", s)
	}
}

func TestHostNetworkOverlay(t *testing.T) {
	o := kustomize(t, "host-network")
	if s := o.configMaps[0].Data["EMBER_KUBE_NETWORK"]; s != "host" {
		t.Errorf("EMBER_KUBE_NETWORK = %q, want host", s)
	}
	ports := map[int32]string{}
	for name, d := range o.deployments {
		spec := d.Spec.Template.Spec
		if !spec.HostNetwork || *d.Spec.Replicas != 1 {
			t.Errorf("%s: hostNetwork %v replicas %d; want true and 1 (a node port per node)", name, spec.HostNetwork, *d.Spec.Replicas)
		}
		checkPod(t, name, spec)
		p := spec.Containers[0].Ports[0].ContainerPort
		if other, dup := ports[p]; dup {
			t.Errorf("%s and %s both bind node port %d", name, other, p)
		}
		ports[p] = name
	}
}

// inEmber matches a metadata or subject namespace line of namespace ember.
var inEmber = regexp.MustCompile(`(?m)^  namespace: ember$`)

// TestServerDryRun sends the manifests to a running API server, which
// validates them against its schemas and admission (Pod Security).
func TestServerDryRun(t *testing.T) {
	kubeconfig := os.Getenv("EMBER_TEST_KUBECONFIG")
	if kubeconfig == "" {
		t.Skip("EMBER_TEST_KUBECONFIG is unset: start a cluster with scripts/kube-cluster.sh start DIR and eval its env")
	}
	for _, dir := range []string{".", "host-network"} {
		// A server-side dry run creates nothing, so the objects of the
		// Namespace it would create cannot be checked in it: they go to
		// namespace default (which exists) instead, the Namespace alone.
		o := kustomize(t, dir)
		var docs []string
		for _, doc := range strings.Split(o.raw, "\n---\n") {
			if strings.Contains(doc, "\nkind: Namespace\n") {
				continue
			}
			// (?m): the line may end the document, with no newline after.
			docs = append(docs, inEmber.ReplaceAllString(doc, "  namespace: default"))
		}
		cmd := exec.Command("kubectl", "--kubeconfig", kubeconfig, "apply", "--dry-run=server", "-f", "-")
		cmd.Stdin = strings.NewReader(strings.Join(docs, "\n---\n"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl apply --dry-run=server (%s): %v\n%s", dir, err, out)
		}
		if n := strings.Count(string(out), "(server dry run)"); n != len(docs) {
			t.Fatalf("%s: %d of %d objects accepted:\n%s", dir, n, len(docs), out)
		}
		t.Logf("%s:\n%s", dir, out)
	}
}

func matches(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func checkPod(t *testing.T, name string, spec corev1.PodSpec) {
	t.Helper()
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: Pod securityContext %+v; want non-root, a uid, RuntimeDefault seccomp", name, psc)
	}
	for _, v := range spec.Volumes {
		if s := v.Secret; s != nil && (s.DefaultMode == nil || *s.DefaultMode&0o007 != 0) {
			t.Errorf("%s: Secret volume %s is readable by every user (defaultMode %v); Ember refuses such key files", name, v.Name, s.DefaultMode)
		}
	}
	all := append(slices.Clone(spec.InitContainers), spec.Containers...)
	for _, c := range all {
		where := name + "/" + c.Name
		r := c.Resources
		if r.Requests.Cpu().IsZero() || r.Requests.Memory().IsZero() || r.Limits.Memory().IsZero() {
			t.Errorf("%s: resources %+v; want cpu and memory requests and a memory limit", where, r)
		}
		sc := c.SecurityContext
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
			t.Errorf("%s: securityContext %+v; want no privilege escalation, read-only root, drop ALL", where, sc)
		}
		if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" ||
			c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
			t.Errorf("%s: want readiness /readyz and liveness /healthz", where)
		}
		for _, e := range c.Env {
			if strings.HasPrefix(e.Name, "EMBER_") && e.Value != "" && (strings.Contains(e.Name, "STORE") || strings.Contains(e.Name, "TOKEN") || strings.Contains(e.Name, "KEY")) {
				t.Errorf("%s: %s has a literal value; credentials come from Secrets", where, e.Name)
			}
		}
		if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
			return e.Name == "EMBER_STORE" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil
		}) {
			t.Errorf("%s: EMBER_STORE must come from a Secret (secretKeyRef)", where)
		}
	}
}

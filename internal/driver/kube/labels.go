package kube

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"

	"github.com/ember-run/ember/internal/driver"
)

// Label keys and values Ember puts on its Pods and Secrets besides
// driver.Labels.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "ember"
)

// labelValueRE is Kubernetes' label value syntax (at most 63 characters,
// checked apart).
var labelValueRE = regexp.MustCompile(`^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`)

const maxLabelValue = 63

// encodeLabel makes v (a function name, "owner/name", or an instance id) a
// valid label value. Ember's names are [a-z0-9-] with at most one "/", so
// "/" becomes "." and decodeLabel reverses it. A value that still does not
// fit (longer than 63 characters, or ending in "-") becomes "h_" and a
// hash: "_" never occurs in an encoded name, so the two forms cannot
// collide. The raw value is kept in an annotation of the same key, which
// is what List reads; the label is for selecting.
func encodeLabel(v string) string {
	enc := strings.ReplaceAll(v, "/", ".")
	if len(enc) <= maxLabelValue && labelValueRE.MatchString(enc) {
		return enc
	}
	sum := sha256.Sum256([]byte(v))
	return "h_" + hex.EncodeToString(sum[:])[:40]
}

// decodeLabel reverses encodeLabel; ok is false for a hashed value, whose
// raw form only the annotation holds.
func decodeLabel(enc string) (string, bool) {
	if strings.HasPrefix(enc, "h_") {
		return "", false
	}
	return strings.ReplaceAll(enc, ".", "/"), true
}

// podLabels are the labels of s's Pod and Secret: Ember's, encoded, plus
// managed-by so that List selects only Ember's objects.
func podLabels(l driver.Labels) map[string]string {
	m := l.Map()
	m[driver.LabelFunction] = encodeLabel(l.Function)
	m[driver.LabelInstance] = encodeLabel(l.Instance)
	m[LabelManagedBy] = ManagedBy
	return m
}

// podAnnotations keep the raw function and instance names.
func podAnnotations(l driver.Labels) map[string]string {
	return map[string]string{driver.LabelFunction: l.Function, driver.LabelInstance: l.Instance}
}

// parsePodLabels reads what podLabels and podAnnotations wrote; ok is
// false for an object that is not one of Ember's instances.
func parsePodLabels(labels, annotations map[string]string) (driver.Labels, bool) {
	if labels[LabelManagedBy] != ManagedBy {
		return driver.Labels{}, false
	}
	m := map[string]string{driver.LabelVersion: labels[driver.LabelVersion]}
	for _, k := range []string{driver.LabelFunction, driver.LabelInstance} {
		if v := annotations[k]; v != "" && encodeLabel(v) == labels[k] {
			m[k] = v
		} else if v, ok := decodeLabel(labels[k]); ok {
			m[k] = v
		}
	}
	return driver.ParseLabels(m)
}

// podName is the Pod's name: "ember-" and the instance id, which starts
// with the function's slug (instance.newID), so `kubectl get pods` reads
// ember-<function>-<suffix>. The onnx pool's workers ("ember:onnx-pool-…")
// read ember-ember-onnx-pool-….
func podName(s driver.StartSpec) string {
	return "ember-" + strings.NewReplacer("/", "-", ":", "-").Replace(s.InstanceID)
}

// secretName is the name of the Secret holding a Pod's environment.
func secretName(pod string) string { return "ember-" + pod }

package spec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
)

// Env is a spec's env: each variable is a literal value or a reference to a
// secret, resolved when an instance starts, so a spec never holds a secret's
// value:
//
//	env: {LOG_LEVEL: debug, HF_TOKEN: {secret: hf-token}}
type Env map[string]EnvVar

// EnvVar is one variable of an Env: Value, or the secret named by Secret.
type EnvVar struct {
	Value  string
	Secret string
}

// Bounds of env and secrets.
const (
	// MaxEnvVars bounds the variables of one spec.
	MaxEnvVars = 256
	// MaxSecretName bounds a secret's name.
	MaxSecretName = 128
)

// Names of the variables Ember sets in every instance. A spec may not set
// them, nor any other EMBER_* name.
const (
	EnvPort     = "PORT"
	EnvFunction = "EMBER_FUNCTION"
	EnvInstance = "EMBER_INSTANCE"
	EnvReadyFD  = "EMBER_READY_FD" // process runtime: the readiness-notification descriptor
)

var (
	envNameRE    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	secretNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
)

// ValidEnvName reports whether name is a portable environment variable
// name ([A-Za-z_][A-Za-z0-9_]*).
func ValidEnvName(name string) bool { return len(name) <= 1024 && envNameRE.MatchString(name) }

// ReservedEnvName reports whether name is one Ember sets or keeps for
// itself: PORT and every EMBER_* name.
func ReservedEnvName(name string) bool {
	return name == EnvPort || strings.HasPrefix(name, "EMBER_")
}

// SecretNameRule describes a valid secret name, for error messages.
const SecretNameRule = "[A-Za-z0-9][A-Za-z0-9_.-]*, at most 128 characters"

// ValidSecretName reports whether name may name a secret.
func ValidSecretName(name string) bool {
	return len(name) <= MaxSecretName && secretNameRE.MatchString(name)
}

// Plain returns the literal variables (nil when there are none).
func (e Env) Plain() map[string]string {
	var out map[string]string
	for k, v := range e {
		if v.Secret == "" {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v.Value
		}
	}
	return out
}

// Secrets returns the variables that name a secret: variable → secret name
// (nil when there are none).
func (e Env) Secrets() map[string]string {
	var out map[string]string
	for k, v := range e {
		if v.Secret != "" {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v.Secret
		}
	}
	return out
}

// MarshalJSON writes literals as strings and references as {"secret": name}.
func (v EnvVar) MarshalJSON() ([]byte, error) {
	if v.Secret != "" {
		return json.Marshal(struct {
			Secret string `json:"secret"`
		}{v.Secret})
	}
	return json.Marshal(v.Value)
}

// UnmarshalJSON reads {NAME: "value"} and {NAME: {secret: name}}, naming
// the variable at fault.
func (e *Env) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("env: want a map of NAME: value or NAME: {secret: NAME}")
	}
	out := make(Env, len(raw))
	for _, k := range slices.Sorted(maps.Keys(raw)) {
		r := bytes.TrimSpace(raw[k])
		var v EnvVar
		switch {
		case len(r) > 0 && r[0] == '"':
			if err := json.Unmarshal(r, &v.Value); err != nil {
				return fmt.Errorf("env.%s: %w", k, err)
			}
		case len(r) > 0 && r[0] == '{':
			var ref struct {
				Secret string `json:"secret"`
			}
			d := json.NewDecoder(bytes.NewReader(r))
			d.DisallowUnknownFields()
			if err := d.Decode(&ref); err != nil || ref.Secret == "" {
				return fmt.Errorf("env.%s: want {secret: NAME} naming a secret (ember secrets set NAME)", k)
			}
			v.Secret = ref.Secret
		default:
			return fmt.Errorf("env.%s: want a string (quote numbers and booleans) or {secret: NAME}, got %s", k, r)
		}
		out[k] = v
	}
	*e = out
	return nil
}

// validateEnv checks variable names, values and secret references.
func validateEnv(env Env, add func(field, format string, args ...any)) {
	if len(env) > MaxEnvVars {
		add("env", "at most %d variables (got %d)", MaxEnvVars, len(env))
	}
	for _, k := range slices.Sorted(maps.Keys(env)) {
		v := env[k]
		switch {
		case !ValidEnvName(k):
			add("env", "invalid variable name %q (want [A-Za-z_][A-Za-z0-9_]*)", k)
			continue
		case ReservedEnvName(k):
			add("env."+k, "reserved: Ember sets PORT, EMBER_FUNCTION, EMBER_INSTANCE and EMBER_READY_FD, and EMBER_* names are Ember's")
		}
		if v.Secret != "" {
			if !ValidSecretName(v.Secret) {
				add("env."+k+".secret", "invalid secret name %q (want %s)", v.Secret, SecretNameRule)
			}
		} else if strings.ContainsRune(v.Value, 0) {
			add("env."+k, "value holds a NUL byte, which no environment variable can")
		}
	}
}

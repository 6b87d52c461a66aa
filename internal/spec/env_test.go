package spec

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestEnvParse(t *testing.T) {
	for _, tt := range []struct {
		name    string
		env     string // the spec's env line
		want    Env
		wantErr string // substring; "" for none
	}{
		{name: "literal", env: `env: {A: x, B_2: "y z"}`, want: Env{"A": {Value: "x"}, "B_2": {Value: "y z"}}},
		{name: "secret", env: `env: {HF_TOKEN: {secret: hf-token}, MODE: fast}`, want: Env{"HF_TOKEN": {Secret: "hf-token"}, "MODE": {Value: "fast"}}},
		{name: "newline in name", env: `env: {"A\nB": x}`, wantErr: `env: invalid variable name "A\nB"`},
		{name: "equals in name", env: `env: {"A=B": x}`, wantErr: `env: invalid variable name "A=B"`},
		{name: "leading digit", env: `env: {"1A": x}`, wantErr: `env: invalid variable name "1A"`},
		{name: "empty name", env: `env: {"": x}`, wantErr: `env: invalid variable name ""`},
		{name: "PORT reserved", env: `env: {PORT: "80"}`, wantErr: "env.PORT: reserved"},
		{name: "EMBER_ reserved", env: `env: {EMBER_API_KEY: x}`, wantErr: "env.EMBER_API_KEY: reserved"},
		{name: "NUL in value", env: `env: {A: "x\0y"}`, wantErr: "env.A: value holds a NUL byte"},
		{name: "bad secret name", env: `env: {A: {secret: "../x"}}`, wantErr: `env.A.secret: invalid secret name "../x"`},
		{name: "unknown key in reference", env: `env: {A: {secrit: x}}`, wantErr: "env.A: want {secret: NAME}"},
		{name: "number", env: `env: {A: 1}`, wantErr: "env.A: want a string (quote numbers and booleans)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse([]byte("name: f\ncommand: [x]\n" + tt.env))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, f.Env); d != "" {
				t.Errorf("env (-want +got):\n%s", d)
			}
		})
	}
}

func TestEnvTooMany(t *testing.T) {
	env := Env{}
	for i := range MaxEnvVars + 1 {
		env["V"+strings.Repeat("x", i)] = EnvVar{Value: "1"}
	}
	f := &Function{Name: "f", Command: []string{"x"}, Env: env}
	f.Default()
	if err := f.Validate(); err == nil || !strings.Contains(err.Error(), "env: at most 256 variables (got 257)") {
		t.Errorf("Validate = %v, want the bound named", err)
	}
}

// A spec's JSON (stored, shown by describe) keeps the reference and so
// never a secret's value; it reads back the same.
func TestEnvJSONRoundTrip(t *testing.T) {
	in := Env{"A": {Value: "x"}, "T": {Secret: "tok"}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `{"A":"x","T":{"secret":"tok"}}`; got != want {
		t.Errorf("JSON = %s, want %s", got, want)
	}
	var out Env
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(in, out); d != "" {
		t.Errorf("round trip (-want +got):\n%s", d)
	}
	if d := cmp.Diff(map[string]string{"A": "x"}, in.Plain()); d != "" {
		t.Errorf("Plain (-want +got):\n%s", d)
	}
	if d := cmp.Diff(map[string]string{"T": "tok"}, in.Secrets()); d != "" {
		t.Errorf("Secrets (-want +got):\n%s", d)
	}
}

package spec

import (
	"strings"
	"testing"
)

func TestCogProtocolDefaults(t *testing.T) {
	tests := []struct {
		name       string
		doc        string
		port, conc int
		health     string
	}{
		{"defaults", "name: c\nruntime: container\nimage: i\nprotocol: cog\n", 5000, 1, "/health-check"},
		{"explicit port and concurrency kept", "name: c\nruntime: container\nimage: i\nprotocol: cog\nport: 8000\nscaling: {concurrency: 3}\n", 8000, 3, "/health-check"},
		{"explicit unlimited concurrency kept", "name: c\nruntime: container\nimage: i\nprotocol: cog\nscaling: {concurrency: 0}\n", 5000, 0, "/health-check"},
		{"http is today's behaviour", "name: c\nruntime: container\nimage: i\n", 0, 0, DefaultHealth},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse([]byte(tc.doc))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if f.Port != tc.port || f.Scaling.Concurrency != tc.conc || f.Health.Path != tc.health {
				t.Errorf("port, concurrency, health = %d, %d, %q; want %d, %d, %q",
					f.Port, f.Scaling.Concurrency, f.Health.Path, tc.port, tc.conc, tc.health)
			}
		})
	}
}

func TestCogProtocolErrors(t *testing.T) {
	tests := []struct{ name, doc, want string }{
		{"unknown protocol", "name: c\nruntime: container\nimage: i\nprotocol: grpc\n", `protocol: must be http or cog (got "grpc")`},
		{"cog needs a container", "name: c\ncommand: [srv]\nprotocol: cog\n", `protocol: cog needs runtime: container`},
		{"wrong type", "name: c\nruntime: container\nimage: i\nprotocol: [cog]\n", `protocol`},
		{"misspelt field", "name: c\nruntime: container\nimage: i\nprotocoll: cog\n", `did you mean "protocol"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

package cli

import (
	"strings"
	"testing"
)

// Bad server settings are refused before anything starts, naming the flag.
func TestServeRejectsBadSettings(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--onnx-threads", "-1"}, "onnx-threads: must be ≥ 0 (got -1)"},
		{[]string{"--onnx-pool", "-2"}, "onnx-pool: must be ≥ 0 (got -2)"},
		{[]string{"--inherit-env", "HF_HOME,EMBER_API_KEY"}, "inherit-env: EMBER_API_KEY: the server's EMBER_* variables never pass to instances"},
		{[]string{"--inherit-env", "A=B"}, `inherit-env: invalid variable name "A=B"`},
		{[]string{"--max-instances", "0"}, "max-instances: must be ≥ 1 (got 0)"},
		{[]string{"--max-instances-per-function", "0"}, "max-instances-per-function: must be ≥ 1 (got 0)"},
		{[]string{"--max-concurrent-starts", "0"}, "max-concurrent-starts: must be ≥ 1 (got 0)"},
		{[]string{"--request-records", "-1"}, "request-records: must be ≥ 0 (got -1)"},
		{[]string{"--request-records", "2000000000"}, "request-records: must be ≤ 1000000000 (got 2000000000)"},
		{[]string{"--body-preread-bytes", "2048", "--body-buffer-budget", "1024"}, "body-preread-bytes: must be ≤ body-buffer-budget (got 2048 > 1024)"},
		{[]string{"--min-body-rate", "-1"}, "min-body-rate: must be ≥ 0 (got -1)"},
		{[]string{"--auth=false", "--admin-key-file", "/run/secrets/key"}, "admin-key-file: needs --auth (it is off)"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			args := append([]string{"--data-dir", t.TempDir(), "--addr", "127.0.0.1:0"}, tt.args...)
			_, err := runCmd(t, newServeCmd(), args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

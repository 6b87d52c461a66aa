package spec

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// Spec errors speak the spec's words: the full field path, every unknown
// field at once with a did-you-mean, types as "want an integer", and never
// a Go type name or "json: cannot unmarshal".
func TestParseErrorsInTheUsersWords(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"nested unknown field with did-you-mean",
			"name: a\ncommand: [x]\nscaling: {idle-timeout: 30s}",
			`invalid spec for "a": unknown field "scaling.idle-timeout" (did you mean "idle_timeout"?)`},
		{"every unknown field at once, sorted by path",
			"name: a\ncommand: [x]\nscalling: {}\nscaling: {maxx: 2, colour: red}\nresources: {gpu: {typ: a100, count: 1}}",
			`invalid spec for "a": unknown field "resources.gpu.typ" (did you mean "type"?); unknown field "scaling.colour"; unknown field "scaling.maxx" (did you mean "max"?); unknown field "scalling" (did you mean "scaling"?)`},
		{"case is a near miss",
			"Name: a\ncommand: [x]",
			`invalid spec: unknown field "Name" (did you mean "name"?)`},
		{"integer as a word",
			"name: a\ncommand: [x]\nscaling: {max: four}",
			`invalid spec for "a": scaling.max: want an integer, got "four"`},
		{"integer as a fraction",
			"name: a\ncommand: [x]\nscaling: {min: 1.5}",
			`invalid spec for "a": scaling.min: want an integer, got 1.5`},
		{"number as a word",
			"name: a\ncommand: [x]\nscaling: {target: high}",
			`invalid spec for "a": scaling.target: want a number, got "high"`},
		{"string as a number",
			"name: a\ncommand: [x]\nworkdir: 5",
			`invalid spec for "a": workdir: want a string, got 5 (quote it)`},
		{"bad duration names its field",
			"name: a\ncommand: [x]\nscaling: {idle_timeout: 5 minutes}",
			`invalid spec for "a": scaling.idle_timeout: want a duration such as "30s" or "2m", got "5 minutes"`},
		{"duration of the wrong kind",
			"name: a\ncommand: [x]\ntimeout: [1]",
			`invalid spec for "a": timeout: want a duration such as "30s" or a number of seconds, got a list`},
		{"auto outside the idle timeout",
			"name: a\ncommand: [x]\ntimeout: auto",
			`invalid spec for "a": timeout: want a duration such as "30s" or "2m", got "auto" (auto is for scaling.idle_timeout only)`},
		{"cold start worth in dollars",
			"name: a\ncommand: [x]\nscaling: {idle_timeout: auto, cold_start_worth: $0.05}",
			`invalid spec for "a": scaling.cold_start_worth: want a duration such as "30s" or "2m", got "$0.05"`},
		{"cold start worth beyond a day",
			"name: a\ncommand: [x]\nscaling: {idle_timeout: auto, cold_start_worth: 25h}",
			`invalid spec for "a": scaling.cold_start_worth: must be a duration of hardware time in (0, 24h0m0s] (got 25h0m0s; leave it out for the server's --default-cold-start-worth)`},
		{"bad duration in a list item",
			"name: a\ncommand: [x]\nscaling: {schedule: [{cron: '@daily', duration: soon, min: 1}]}",
			`invalid spec for "a": scaling.schedule[0].duration: want a duration such as "30s" or "2m", got "soon"`},
		{"mapping expected",
			"name: a\ncommand: [x]\nscaling: 4",
			`invalid spec for "a": scaling: want a mapping (field: value), got 4`},
		{"list expected",
			"name: a\ncommand: [x]\nscaling: {schedule: daily}",
			`invalid spec for "a": scaling.schedule: want a list, got "daily"`},
		{"list item of the wrong type",
			"name: a\ncommand: [x, 3]\n",
			`invalid spec for "a": command[1]: want a string, got 3 (quote it)`},
		{"env names its variable",
			"name: a\ncommand: [x]\nenv: {A: {secrets: x}}",
			`invalid spec for "a": env.A: want {secret: NAME} naming a secret (ember secrets set NAME)`},
		{"string command that needs a shell",
			"name: a\ncommand: python3 server.py | tee log",
			`invalid spec for "a": command: "python3 server.py | tee log" needs a shell (| is a shell operator); write it as a list: [sh, -c, "python3 server.py | tee log"]`},
		{"string command unterminated",
			"name: a\ncommand: \"python3 'server.py\"",
			`invalid spec for "a": command: unterminated ' in "python3 'server.py"`},
		{"type and unknown errors together",
			"name: a\ncommand: [x]\nscaling: {max: four, idle-timeout: 1s}\nretries: many",
			`invalid spec for "a": retries: want an integer, got "many"; unknown field "scaling.idle-timeout" (did you mean "idle_timeout"?); scaling.max: want an integer, got "four"`},
		{"duplicate key",
			"name: a\nname: b\ncommand: [x]",
			`spec: line 2: key "name" already set in map`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.in))
			if err == nil {
				t.Fatalf("Parse accepted %q", tt.in)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("error =\n  %s\nwant\n  %s", got, tt.want)
			}
			for _, leak := range []string{"json:", "unmarshal", "Go struct", "[]string", "of type", "float64", "spec.Function"} {
				if strings.Contains(err.Error(), leak) {
					t.Errorf("error leaks %q: %s", leak, err)
				}
			}
		})
	}
}

// A type or unknown-field error is a *ValidationError, so the API answers
// it as invalid_spec with the same rendering as validation.
func TestDecodeErrorsAreValidationErrors(t *testing.T) {
	_, err := Parse([]byte("name: a\ncommand: [x]\nscaling: {max: four}"))
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Errs) != 1 || ve.Errs[0].Field != "scaling.max" {
		t.Fatalf("err = %#v, want one FieldError for scaling.max", err)
	}
}

// A string command is split as a POSIX shell splits words, without a shell.
func TestStringCommand(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{`python3 server.py`, []string{"python3", "server.py"}},
		{`./bin/sim --port ${PORT}`, []string{"./bin/sim", "--port", "${PORT}"}},
		{`  a   b  `, []string{"a", "b"}},
		{`sh -c 'exec ./x --port "$PORT"'`, []string{"sh", "-c", `exec ./x --port "$PORT"`}},
		{`echo "a \"b\" c\\d \e"`, []string{"echo", `a "b" c\d \e`}},
		{`a\ b c`, []string{"a b", "c"}},
		{`a '' b`, []string{"a", "", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := SplitCommand(tt.in)
			if err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("SplitCommand(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
	f, err := Parse([]byte("name: a\ncommand: python3 -u server.py --port ${PORT}"))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if want := []string{"python3", "-u", "server.py", "--port", "${PORT}"}; !slices.Equal(f.Command, want) {
		t.Errorf("command = %q, want %q", f.Command, want)
	}
	if _, err := SplitCommand("   "); err == nil || err.Error() != "empty command" {
		t.Errorf("blank command: err = %v", err)
	}
}

func TestSuggest(t *testing.T) {
	fields := jsonFields(reflectScaling)
	for key, want := range map[string]string{
		"idle-timeout": "idle_timeout", "IdleTimeout": "idle_timeout", "mx": "max", "queu": "queue",
		"concurency": "concurrency", "zzzzzz": "", "x": "",
	} {
		if got := suggest(key, fields); got != want {
			t.Errorf("suggest(%q) = %q, want %q", key, got, want)
		}
	}
}

var reflectScaling = reflect.TypeFor[Scaling]()

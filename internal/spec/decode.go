package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"sigs.k8s.io/yaml"
)

// decode reads a YAML or JSON document into f. Rather than hand the
// document to encoding/json, whose errors speak of Go types
// ("cannot unmarshal string into Go struct field Scaling.scaling.max of
// type int"), it first walks the document against Function's json tags and
// reports every problem at once, in the spec's own words: the full field
// path, every unknown field with a did-you-mean, and type errors as
// "scaling.max: want an integer, got \"four\"". A string command is split
// as a shell would split it. Only a document that passes the walk is
// decoded, so the decode itself cannot fail on the user's input.
func decode(data []byte, f *Function) error {
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return fmt.Errorf("spec: %w", cleanYAMLError(err))
	}
	d := json.NewDecoder(bytes.NewReader(js))
	d.UseNumber()
	doc, err := readValue(d)
	if err != nil {
		return fmt.Errorf("spec: %w", err)
	}
	if doc == nil { // an empty document: every field unset
		doc = object{}
	}
	w := &walker{}
	doc = w.walk("", doc, reflect.TypeFor[Function]())
	if len(w.errs) > 0 {
		name := ""
		if o, ok := doc.(object); ok {
			if n, ok := o.get("name").(string); ok {
				name = n
			}
		}
		return &ValidationError{Function: name, Errs: w.errs}
	}
	fixed, err := json.Marshal(doc)
	if err != nil {
		return fmt.Errorf("spec: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(fixed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(f); err != nil {
		// Not expected after the walk; still no Go type names for the user.
		return fmt.Errorf("spec: %w", cleanYAMLError(err))
	}
	var given presence
	_ = json.Unmarshal(fixed, &given) // same document, already decoded once
	f.given = &given
	return nil
}

// object is a JSON object that keeps its keys in the order read (the
// YAML-to-JSON step sorts them), so that errors come sorted by path.
type object []member

type member struct {
	key string
	val any
}

func (o object) get(key string) any {
	for _, m := range o {
		if m.key == key {
			return m.val
		}
	}
	return nil
}

// MarshalJSON writes the members in order.
func (o object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(m.key)
		v, err := json.Marshal(m.val)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// readValue reads one JSON value: object, []any, string, json.Number, bool
// or nil.
func readValue(d *json.Decoder) (any, error) {
	tok, err := d.Token()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			var o object
			for d.More() {
				kt, err := d.Token()
				if err != nil {
					return nil, err
				}
				v, err := readValue(d)
				if err != nil {
					return nil, err
				}
				o = append(o, member{key: kt.(string), val: v})
			}
			if _, err := d.Token(); err != nil {
				return nil, err
			}
			if o == nil {
				o = object{}
			}
			return o, nil
		case '[':
			l := []any{}
			for d.More() {
				v, err := readValue(d)
				if err != nil {
					return nil, err
				}
				l = append(l, v)
			}
			if _, err := d.Token(); err != nil {
				return nil, err
			}
			return l, nil
		}
	}
	return tok, nil
}

// walker checks a document against a Go type, collecting every error.
type walker struct{ errs []*FieldError }

func (w *walker) fail(path, format string, args ...any) {
	w.errs = append(w.errs, &FieldError{Field: path, Reason: fmt.Sprintf(format, args...)})
}

var (
	durationType = reflect.TypeFor[Duration]()
	unmarshaler  = reflect.TypeFor[json.Unmarshaler]()
	volumesType  = reflect.TypeFor[Volumes]()
)

// walk checks v against t at path and returns v, rewritten where the spec
// accepts a friendlier form (a string command).
func (w *walker) walk(path string, v any, t reflect.Type) any {
	if v == nil { // null leaves a field unset, as in encoding/json
		return nil
	}
	if t.Kind() == reflect.Pointer {
		return w.walk(path, v, t.Elem())
	}
	switch {
	case t == durationType:
		w.duration(path, v)
		return v
	case t == volumesType && isList(v):
		// The list form of volumes is plain structs: walked as such, so
		// its errors are the spec's usual ones (did-you-mean and all).
	case reflect.PointerTo(t).Implements(unmarshaler):
		w.custom(path, v, t)
		return v
	}
	switch t.Kind() {
	case reflect.Struct:
		o, ok := v.(object)
		if !ok {
			w.fail(path, "want a mapping (field: value), got %s", describe(v))
			return v
		}
		return w.object(path, o, t)
	case reflect.Map:
		o, ok := v.(object)
		if !ok {
			w.fail(path, "want a mapping (key: value), got %s", describe(v))
			return v
		}
		for i := range o {
			o[i].val = w.walk(join(path, o[i].key), o[i].val, t.Elem())
		}
		return o
	case reflect.Slice:
		if s, ok := v.(string); ok && path == "command" && t.Elem().Kind() == reflect.String {
			argv, err := SplitCommand(s)
			if err != nil {
				w.fail(path, "%v", err)
				return v
			}
			l := make([]any, len(argv))
			for i, a := range argv {
				l[i] = a
			}
			return l
		}
		l, ok := v.([]any)
		if !ok {
			w.fail(path, "want a list, got %s", describe(v))
			return v
		}
		for i := range l {
			l[i] = w.walk(fmt.Sprintf("%s[%d]", path, i), l[i], t.Elem())
		}
		return l
	case reflect.String:
		if _, ok := v.(string); !ok {
			w.fail(path, "want a string, got %s (quote it)", describe(v))
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			w.fail(path, "want true or false, got %s", describe(v))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := v.(json.Number)
		if !ok {
			w.fail(path, "want an integer, got %s", describe(v))
			break
		}
		if _, err := strconv.ParseInt(string(n), 10, t.Bits()); err != nil {
			if f, ferr := strconv.ParseFloat(string(n), 64); ferr == nil && f == math.Trunc(f) && !math.IsInf(f, 0) {
				w.fail(path, "want an integer, got %s (out of range)", n)
			} else {
				w.fail(path, "want an integer, got %s", n)
			}
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := v.(json.Number)
		if !ok {
			w.fail(path, "want a whole number, got %s", describe(v))
			break
		}
		if _, err := strconv.ParseUint(string(n), 10, t.Bits()); err != nil {
			w.fail(path, "want a whole number, got %s", n)
		}
	case reflect.Float32, reflect.Float64:
		n, ok := v.(json.Number)
		if !ok {
			w.fail(path, "want a number, got %s", describe(v))
			break
		}
		if _, err := strconv.ParseFloat(string(n), t.Bits()); err != nil {
			w.fail(path, "want a number, got %s (out of range)", n)
		}
	}
	return v
}

// object checks each member against the struct's json fields: unknown
// fields are all reported, each with a did-you-mean when one is near.
func (w *walker) object(path string, o object, t reflect.Type) object {
	fields := jsonFields(t)
	seen := map[string]bool{}
	for i, m := range o {
		ft, ok := fields[m.key]
		if !ok {
			fe := &FieldError{Field: join(path, m.key), unknown: true}
			if s := suggest(m.key, fields); s != "" {
				fe.Reason = fmt.Sprintf(" (did you mean %q?)", s)
			}
			w.errs = append(w.errs, fe)
			continue
		}
		if seen[m.key] {
			w.fail(join(path, m.key), "set twice")
			continue
		}
		seen[m.key] = true
		o[i].val = w.walk(join(path, m.key), m.val, ft)
	}
	return o
}

// duration accepts "30s", "2m" or a number of seconds, and "auto" for
// scaling.idle_timeout.
func (w *walker) duration(path string, v any) {
	switch d := v.(type) {
	case string:
		if d == "auto" {
			// The learned keep-warm window (IdleAuto): only the idle
			// timeout has one.
			if path != "scaling.idle_timeout" {
				w.fail(path, "want a duration such as \"30s\" or \"2m\", got \"auto\" (auto is for scaling.idle_timeout only)")
			}
			return
		}
		if _, err := time.ParseDuration(d); err != nil {
			w.fail(path, "want a duration such as \"30s\" or \"2m\", got %s", describe(v))
		}
		return
	case json.Number:
		if f, err := strconv.ParseFloat(string(d), 64); err == nil && !math.IsInf(f, 0) && math.Abs(f) < float64(math.MaxInt64)/float64(time.Second) {
			return
		}
	}
	w.fail(path, "want a duration such as \"30s\" or a number of seconds, got %s", describe(v))
}

// custom checks a value whose type decodes itself (env): its own error
// names the field, or gets the path in front.
func (w *walker) custom(path string, v any, t reflect.Type) {
	b, err := json.Marshal(v)
	if err != nil {
		w.fail(path, "%v", err)
		return
	}
	p := reflect.New(t).Interface().(json.Unmarshaler)
	if err := p.UnmarshalJSON(b); err != nil {
		msg := err.Error()
		if field, reason, ok := strings.Cut(msg, ": "); ok && (field == path || strings.HasPrefix(field, path+".")) {
			w.fail(field, "%s", reason)
			return
		}
		w.fail(path, "%s", msg)
	}
}

// jsonFields maps the json names of t's fields to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = sf.Name
		}
		out[name] = sf.Type
	}
	return out
}

// suggest returns the known field nearest to key: the same once case,
// '-' and '_' are set aside, or within two edits; "" when none is near.
func suggest(key string, fields map[string]reflect.Type) string {
	norm := func(s string) string { return strings.ReplaceAll(strings.ToLower(s), "-", "_") }
	best, bestD := "", 3
	for name := range fields {
		if norm(name) == norm(key) {
			return name
		}
		if d := editDistance(norm(key), norm(name)); d < bestD || (d == bestD && name < best) {
			best, bestD = name, d
		}
	}
	if bestD > 2 || bestD >= utf8.RuneCountInString(key) {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

func isList(v any) bool {
	_, ok := v.([]any)
	return ok
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// describe renders a document value for "got ...": strings quoted (and
// cut), numbers and booleans as written, lists and mappings by kind.
func describe(v any) string {
	switch x := v.(type) {
	case string:
		if utf8.RuneCountInString(x) > 40 {
			x = string([]rune(x)[:40]) + "…"
		}
		return strconv.Quote(x)
	case json.Number:
		return string(x)
	case bool:
		return strconv.FormatBool(x)
	case []any:
		return "a list"
	case object:
		return "a mapping"
	case nil:
		return "null"
	}
	return fmt.Sprint(v)
}

// SplitCommand splits a command line into argv the way a POSIX shell
// splits words: blanks separate words, 'single quotes' keep everything,
// "double quotes" keep everything but \" \\ \$ \` escapes, and a backslash
// outside quotes escapes the next character. It runs no shell: operators
// (| & ; < > ( ) and backquotes) are refused with the list form to use
// instead, and only ${PORT} is expanded, later, as in the list form.
func SplitCommand(s string) ([]string, error) {
	var (
		argv  []string
		word  strings.Builder
		inArg bool
	)
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		c := rs[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			if inArg {
				argv = append(argv, word.String())
				word.Reset()
				inArg = false
			}
		case c == '\'':
			inArg = true
			j := i + 1
			for j < len(rs) && rs[j] != '\'' {
				j++
			}
			if j == len(rs) {
				return nil, fmt.Errorf("unterminated ' in %q", s)
			}
			word.WriteString(string(rs[i+1 : j]))
			i = j
		case c == '"':
			inArg = true
			j := i + 1
			for ; j < len(rs) && rs[j] != '"'; j++ {
				if rs[j] == '\\' && j+1 < len(rs) && strings.ContainsRune("\"\\$`", rs[j+1]) {
					j++
				}
				word.WriteRune(rs[j])
			}
			if j == len(rs) {
				return nil, fmt.Errorf("unterminated \" in %q", s)
			}
			i = j
		case c == '\\':
			inArg = true
			if i+1 < len(rs) {
				i++
				word.WriteRune(rs[i])
			}
		case strings.ContainsRune("|&;<>()`", c):
			return nil, fmt.Errorf("%q needs a shell (%c is a shell operator); write it as a list: [sh, -c, %q]", s, c, s)
		default:
			inArg = true
			word.WriteRune(c)
		}
	}
	if inArg {
		argv = append(argv, word.String())
	}
	if len(argv) == 0 {
		return nil, errors.New("empty command")
	}
	return argv, nil
}

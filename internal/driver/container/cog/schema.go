package cog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
)

// maxSchemaBytes bounds the openapi.json Ember reads from an image; Cog's
// own documents are a few kilobytes.
const maxSchemaBytes = 1 << 20

// maxFields bounds the properties Ember accepts in an Input schema.
const maxFields = 1000

// Schema is the Input schema of a Cog model, as its /openapi.json
// declares it (components.schemas.Input), reduced to what Ember checks.
type Schema struct {
	// Properties by name; Order is their x-order (then name).
	Properties map[string]Property
	Order      []string
	Required   []string
	// Raw is the Input schema as the image wrote it, refs resolved, shown
	// by `ember describe`.
	Raw json.RawMessage
}

// Property is one input field.
type Property struct {
	Type        string // string, integer, number, boolean, array, object; "" = any
	Format      string // "uri" for cog.Path/File inputs
	Enum        []json.RawMessage
	Minimum     *float64
	Maximum     *float64
	Default     json.RawMessage
	Description string
	order       float64
}

type openAPIDoc struct {
	Components struct {
		Schemas map[string]json.RawMessage `json:"schemas"`
	} `json:"components"`
}

type rawProperty struct {
	Type        string            `json:"type"`
	Format      string            `json:"format"`
	Enum        []json.RawMessage `json:"enum"`
	Minimum     *float64          `json:"minimum"`
	Maximum     *float64          `json:"maximum"`
	Default     json.RawMessage   `json:"default"`
	Description string            `json:"description"`
	Order       *float64          `json:"x-order"`
	Ref         string            `json:"$ref"`
	AllOf       []struct {
		Ref string `json:"$ref"`
	} `json:"allOf"`
}

// ParseOpenAPI reads the Input schema out of a Cog /openapi.json document.
// Choices (Cog writes them as allOf: [{$ref: …}] to an enum schema) are
// resolved.
func ParseOpenAPI(doc []byte) (*Schema, error) {
	var d openAPIDoc
	if err := json.Unmarshal(doc, &d); err != nil {
		return nil, fmt.Errorf("openapi.json: %w", err)
	}
	rawInput, ok := d.Components.Schemas["Input"]
	if !ok {
		return nil, errors.New("openapi.json: no components.schemas.Input")
	}
	var in struct {
		Properties map[string]rawProperty `json:"properties"`
		Required   []string               `json:"required"`
	}
	if err := json.Unmarshal(rawInput, &in); err != nil {
		return nil, fmt.Errorf("openapi.json: components.schemas.Input: %w", err)
	}
	if len(in.Properties) > maxFields {
		return nil, fmt.Errorf("openapi.json: Input has %d properties (at most %d)", len(in.Properties), maxFields)
	}
	s := &Schema{Properties: map[string]Property{}, Required: in.Required}
	resolved := map[string]json.RawMessage{}
	for name, rp := range in.Properties {
		ref := rp.Ref
		if ref == "" && len(rp.AllOf) == 1 {
			ref = rp.AllOf[0].Ref
		}
		if target, ok := strings.CutPrefix(ref, "#/components/schemas/"); ok {
			if raw, ok := d.Components.Schemas[target]; ok {
				var t rawProperty
				if json.Unmarshal(raw, &t) == nil {
					rp.Type = cmpOr(rp.Type, t.Type)
					if rp.Enum == nil {
						rp.Enum = t.Enum
					}
					resolved[name] = raw
				}
			}
		}
		p := Property{Type: rp.Type, Format: rp.Format, Enum: rp.Enum, Minimum: rp.Minimum, Maximum: rp.Maximum,
			Default: rp.Default, Description: rp.Description, order: math.Inf(1)}
		if rp.Order != nil {
			p.order = *rp.Order
		}
		s.Properties[name] = p
		s.Order = append(s.Order, name)
	}
	slices.SortFunc(s.Order, func(a, b string) int {
		pa, pb := s.Properties[a].order, s.Properties[b].order
		if pa != pb {
			if pa < pb {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	s.Raw = rawInput
	if len(resolved) > 0 {
		// Inline the choices' enums (and type) so `describe` shows them.
		var m map[string]any
		if json.Unmarshal(rawInput, &m) == nil {
			if props, ok := m["properties"].(map[string]any); ok {
				for name, raw := range resolved {
					var v any
					if json.Unmarshal(raw, &v) == nil {
						if p, ok := props[name].(map[string]any); ok {
							delete(p, "allOf")
							ref, _ := v.(map[string]any)
							p["enum"] = ref["enum"]
							if t, ok := ref["type"]; ok && p["type"] == nil {
								p["type"] = t
							}
						}
					}
				}
			}
			if b, err := json.Marshal(m); err == nil {
				s.Raw = b
			}
		}
	}
	return s, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// FetchSchema GETs base+"/openapi.json" and parses its Input schema.
func FetchSchema(ctx context.Context, c *http.Client, base string) (*Schema, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/openapi.json", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("openapi.json: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("openapi.json: %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxSchemaBytes+1))
	if err != nil {
		return nil, fmt.Errorf("openapi.json: %w", err)
	}
	if len(body) > maxSchemaBytes {
		return nil, fmt.Errorf("openapi.json: larger than %d bytes", maxSchemaBytes)
	}
	return ParseOpenAPI(body)
}

// InputError is one input field at fault.
type InputError struct {
	Field  string // the input's name, e.g. "prompt"
	Reason string
}

func (e InputError) Error() string { return "input." + e.Field + ": " + e.Reason }

// Validate checks input against the schema: every required field present,
// no field the model does not take, and each value of its declared type,
// choice and range. It returns every problem, in schema order.
func (s *Schema) Validate(input map[string]json.RawMessage) []InputError {
	var errs []InputError
	for _, name := range s.Required {
		if _, ok := input[name]; !ok {
			errs = append(errs, InputError{name, "required"})
		}
	}
	var unknown []string
	for name := range input {
		if _, ok := s.Properties[name]; !ok {
			unknown = append(unknown, name)
		}
	}
	slices.Sort(unknown)
	for _, name := range unknown {
		errs = append(errs, InputError{name, fmt.Sprintf("unknown field (this model takes %s)", strings.Join(s.Order, ", "))})
	}
	for _, name := range s.Order {
		v, ok := input[name]
		if !ok {
			continue
		}
		if reason := s.Properties[name].check(v); reason != "" {
			errs = append(errs, InputError{name, reason})
		}
	}
	return errs
}

// check returns why v does not fit p, or "".
func (p Property) check(v json.RawMessage) string {
	v = bytes.TrimSpace(v)
	got := jsonKind(v)
	switch p.Type {
	case "":
	case "integer":
		var f float64
		if got != "number" || json.Unmarshal(v, &f) != nil || f != math.Trunc(f) {
			return fmt.Sprintf("must be an integer (got %s)", describe(v, got))
		}
	case "number":
		if got != "number" {
			return fmt.Sprintf("must be a number (got %s)", describe(v, got))
		}
	default:
		if got != p.Type {
			return fmt.Sprintf("must be %s %s (got %s)", article(p.Type), p.Type, describe(v, got))
		}
	}
	if got == "number" && (p.Minimum != nil || p.Maximum != nil) {
		var f float64
		json.Unmarshal(v, &f)
		if p.Minimum != nil && f < *p.Minimum {
			return fmt.Sprintf("must be ≥ %g (got %s)", *p.Minimum, v)
		}
		if p.Maximum != nil && f > *p.Maximum {
			return fmt.Sprintf("must be ≤ %g (got %s)", *p.Maximum, v)
		}
	}
	if len(p.Enum) > 0 {
		var opts []string
		for _, e := range p.Enum {
			if jsonEqual(e, v) {
				return ""
			}
			opts = append(opts, string(e))
		}
		return fmt.Sprintf("must be one of %s (got %s)", strings.Join(opts, ", "), v)
	}
	return ""
}

func jsonKind(v []byte) string {
	if len(v) == 0 {
		return "nothing"
	}
	switch v[0] {
	case '"':
		return "string"
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

func describe(v []byte, kind string) string {
	if len(v) > 40 {
		return kind
	}
	return kind + " " + string(v)
}

func article(t string) string {
	if t != "" && strings.ContainsRune("aeiou", rune(t[0])) {
		return "an"
	}
	return "a"
}

func jsonEqual(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return bytes.Equal(xb, yb)
}

// Check parses input (a JSON object of the model's inputs) and validates
// it: nil, or an error naming every field at fault, as the 422's message.
func (s *Schema) Check(input json.RawMessage) error {
	_, err := s.parse(input)
	return err
}

// parse reads input as the model's inputs and, for a non-nil schema,
// validates them. Empty input and null are {}.
func (s *Schema) parse(input []byte) (map[string]json.RawMessage, error) {
	input = bytes.TrimSpace(input)
	if len(input) == 0 || string(input) == "null" {
		input = []byte("{}")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(input, &fields); err != nil {
		return nil, errors.New("input: must be a JSON object of the model's inputs, e.g. {\"prompt\": \"…\"}")
	}
	if fields == nil {
		fields = map[string]json.RawMessage{}
	}
	if s == nil {
		return fields, nil
	}
	errs := s.Validate(fields)
	if len(errs) == 0 {
		return fields, nil
	}
	parts := make([]string, len(errs))
	for i, e := range errs {
		parts[i] = e.Error()
	}
	return nil, errors.New("invalid input: " + strings.Join(parts, "; "))
}

package textmodel

import (
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
)

type refCase struct {
	Text    string  `json:"text"`
	IDs     []int32 `json:"ids"`
	Mask    []int32 `json:"attention_mask"`
	Trunc16 []int32 `json:"ids_trunc16"`
}

func loadReference(t *testing.T) []refCase {
	t.Helper()
	b, err := os.ReadFile("testdata/reference.json")
	if err != nil {
		t.Fatal(err)
	}
	var ref struct{ Cases []refCase }
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatal(err)
	}
	if len(ref.Cases) < 15 {
		t.Fatalf("reference has %d cases", len(ref.Cases))
	}
	return ref.Cases
}

// TestTokenizerMatchesHuggingFace compares ids and attention masks exactly
// with Hugging Face's tokenizer (testdata/gen-ref.mjs) on all-MiniLM-L6-v2's
// tokenizer.json: its own truncation (128) and fixed padding (128), and a
// lower max length with padding off, as a spec override does.
func TestTokenizerMatchesHuggingFace(t *testing.T) {
	tk, err := LoadTokenizer("bertgen/tokenizer.json")
	if err != nil {
		t.Fatal(err)
	}
	if tk.MaxLength != 128 || tk.PadFixed != 128 {
		t.Fatalf("truncation/padding from tokenizer.json: max %d pad %d, want 128/128", tk.MaxLength, tk.PadFixed)
	}
	unpadded := *tk
	unpadded.PadFixed = 0
	for _, c := range loadReference(t) {
		e := tk.Encode(c.Text, 0)
		if !slices.Equal(e.IDs, c.IDs) || !slices.Equal(e.Mask, c.Mask) {
			t.Errorf("%q:\n got %v\nwant %v", c.Text, e.IDs, c.IDs)
		}
		s := unpadded.Encode(c.Text, 16)
		if !slices.Equal(s.IDs, c.Trunc16) {
			t.Errorf("%q (max 16):\n got %v\nwant %v", c.Text, s.IDs, c.Trunc16)
		}
		if s.Truncated != (tk.CountTokens(c.Text) > 16) {
			t.Errorf("%q: Truncated = %v with %d tokens", c.Text, s.Truncated, tk.CountTokens(c.Text))
		}
	}
}

func TestParseTokenizerRefuses(t *testing.T) {
	base, err := os.ReadFile("bertgen/tokenizer.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ from, to, want string }{
		{`"type": "WordPiece",
    "unk_token"`, `"type": "BPE",
    "unk_token"`, `model.type is "BPE"`},
		{`"type": "BertNormalizer"`, `"type": "NFKC"`, `normalizer.type is "NFKC"`},
		{`"type": "BertPreTokenizer"`, `"type": "Metaspace"`, `pre_tokenizer.type is "Metaspace"`},
		{`"Fixed": 128`, `"Fixed": 0`, `padding.strategy`},
	} {
		s := string(base)
		if !strings.Contains(s, tc.from) {
			t.Fatalf("fixture lacks %q", tc.from)
		}
		_, err := ParseTokenizer([]byte(strings.Replace(s, tc.from, tc.to, 1)))
		if !errors.Is(err, ErrTokenizer) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.to, err, tc.want)
		}
	}
}

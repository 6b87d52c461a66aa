package textmodel

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Tokenizer turns text into model inputs, reading a Hugging Face
// tokenizer.json. It implements what BERT-family exports use: the WordPiece
// model, the BertNormalizer, the BertPreTokenizer, TemplateProcessing or
// BertProcessing post-processors, added (special) tokens, and the file's
// truncation and padding settings. Anything else in the file is refused at
// load with the field and value named, rather than tokenised differently
// from Hugging Face.
//
// Why not a library: github.com/sugarme/tokenizer (v0.3.0) reads the file
// but gives different ids from Hugging Face's on accented, Greek, Cyrillic
// and symbol text (it does not strip accents when strip_accents is null and
// lowercase is set, as Hugging Face does), keeps mutable package state and
// logs to the standard logger; github.com/daulet/tokenizers needs cgo and a
// Rust static library. The test vectors in testdata come from Hugging Face's
// own tokenizer (npm tokenizers, testdata/gen-ref.mjs).
//
// A Tokenizer is immutable and safe for concurrent use.
type Tokenizer struct {
	vocab       map[string]int32
	unkID       int32
	prefix      string // continuing subword prefix, "##"
	maxWordLen  int    // max_input_chars_per_word
	clean       bool
	chinese     bool
	stripAccent bool
	lower       bool
	added       []addedToken // longest content first
	cls, sep    []int32      // post-processor's special ids around a single sequence
	// MaxLength is the truncation length (0: none), counting special tokens.
	MaxLength int
	// PadFixed pads every encoding to this length (0: pad per batch).
	PadFixed int
	PadID    int32
}

type addedToken struct {
	content string
	id      int32
}

// ErrTokenizer is wrapped by every tokenizer.json the Tokenizer cannot
// reproduce faithfully.
var ErrTokenizer = errors.New("tokenizer.json")

// tokenizerFile is the subset of tokenizer.json read here.
type tokenizerFile struct {
	Truncation *struct {
		Direction string `json:"direction"`
		MaxLength int    `json:"max_length"`
		Strategy  string `json:"strategy"`
		Stride    int    `json:"stride"`
	} `json:"truncation"`
	Padding *struct {
		Strategy  json.RawMessage `json:"strategy"`
		Direction string          `json:"direction"`
		PadToMult *int            `json:"pad_to_multiple_of"`
		PadID     int32           `json:"pad_id"`
	} `json:"padding"`
	AddedTokens []struct {
		ID         int32  `json:"id"`
		Content    string `json:"content"`
		SingleWord bool   `json:"single_word"`
		LStrip     bool   `json:"lstrip"`
		RStrip     bool   `json:"rstrip"`
		Normalized bool   `json:"normalized"`
		Special    bool   `json:"special"`
	} `json:"added_tokens"`
	Normalizer *struct {
		Type               string `json:"type"`
		CleanText          bool   `json:"clean_text"`
		HandleChineseChars bool   `json:"handle_chinese_chars"`
		StripAccents       *bool  `json:"strip_accents"`
		Lowercase          bool   `json:"lowercase"`
	} `json:"normalizer"`
	PreTokenizer *struct {
		Type string `json:"type"`
	} `json:"pre_tokenizer"`
	PostProcessor *struct {
		Type   string            `json:"type"`
		Single []json.RawMessage `json:"single"`
		// TemplateProcessing's special_tokens: name → ids.
		SpecialTokens map[string]struct {
			IDs []int32 `json:"ids"`
		} `json:"special_tokens"`
		// BertProcessing's [token, id] pairs.
		Sep []json.RawMessage `json:"sep"`
		Cls []json.RawMessage `json:"cls"`
	} `json:"post_processor"`
	Model struct {
		Type     string           `json:"type"`
		UnkToken string           `json:"unk_token"`
		Prefix   *string          `json:"continuing_subword_prefix"`
		MaxChars int              `json:"max_input_chars_per_word"`
		Vocab    map[string]int32 `json:"vocab"`
	} `json:"model"`
}

// LoadTokenizer reads a tokenizer.json file.
func LoadTokenizer(path string) (*Tokenizer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTokenizer, err)
	}
	t, err := ParseTokenizer(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// ParseTokenizer parses tokenizer.json bytes.
func ParseTokenizer(b []byte) (*Tokenizer, error) {
	var f tokenizerFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTokenizer, err)
	}
	bad := func(field, got, want string) error {
		return fmt.Errorf("%w: %s is %q; supported: %s", ErrTokenizer, field, got, want)
	}
	if f.Model.Type != "WordPiece" {
		return nil, bad("model.type", f.Model.Type, "WordPiece (BERT-family models)")
	}
	t := &Tokenizer{vocab: f.Model.Vocab, prefix: "##", maxWordLen: f.Model.MaxChars}
	if f.Model.Prefix != nil {
		t.prefix = *f.Model.Prefix
	}
	if t.maxWordLen <= 0 {
		t.maxWordLen = 100
	}
	unk, ok := t.vocab[f.Model.UnkToken]
	if !ok {
		return nil, fmt.Errorf("%w: model.unk_token %q is not in the vocabulary", ErrTokenizer, f.Model.UnkToken)
	}
	t.unkID = unk
	if n := f.Normalizer; n != nil {
		if n.Type != "BertNormalizer" {
			return nil, bad("normalizer.type", n.Type, "BertNormalizer or null")
		}
		t.clean, t.chinese, t.lower = n.CleanText, n.HandleChineseChars, n.Lowercase
		// Hugging Face: strip_accents null follows lowercase.
		t.stripAccent = n.Lowercase
		if n.StripAccents != nil {
			t.stripAccent = *n.StripAccents
		}
	}
	if p := f.PreTokenizer; p == nil || p.Type != "BertPreTokenizer" {
		got := "null"
		if p != nil {
			got = p.Type
		}
		return nil, bad("pre_tokenizer.type", got, "BertPreTokenizer")
	}
	for _, a := range f.AddedTokens {
		if a.SingleWord || a.LStrip || a.RStrip || a.Normalized {
			return nil, fmt.Errorf("%w: added token %q: single_word, lstrip, rstrip and normalized added tokens are not supported", ErrTokenizer, a.Content)
		}
		if a.Content != "" {
			t.added = append(t.added, addedToken{a.Content, a.ID})
		}
	}
	sort.SliceStable(t.added, func(i, j int) bool { return len(t.added[i].content) > len(t.added[j].content) })
	if err := t.parsePost(&f); err != nil {
		return nil, err
	}
	if tr := f.Truncation; tr != nil {
		if tr.Direction != "" && tr.Direction != "Right" {
			return nil, bad("truncation.direction", tr.Direction, "Right")
		}
		t.MaxLength = tr.MaxLength
	}
	if p := f.Padding; p != nil {
		if p.Direction != "" && p.Direction != "Right" {
			return nil, bad("padding.direction", p.Direction, "Right")
		}
		t.PadID = p.PadID
		var fixed struct {
			Fixed int `json:"Fixed"`
		}
		var s string
		switch {
		case json.Unmarshal(p.Strategy, &s) == nil && s == "BatchLongest":
		case json.Unmarshal(p.Strategy, &fixed) == nil && fixed.Fixed > 0:
			t.PadFixed = fixed.Fixed
		default:
			return nil, bad("padding.strategy", string(p.Strategy), `"BatchLongest" or {"Fixed": N}`)
		}
	}
	return t, nil
}

func (t *Tokenizer) parsePost(f *tokenizerFile) error {
	p := f.PostProcessor
	if p == nil {
		return nil
	}
	switch p.Type {
	case "TemplateProcessing":
		seenA := false
		for _, raw := range p.Single {
			var item struct {
				SpecialToken *struct {
					ID string `json:"id"`
				} `json:"SpecialToken"`
				Sequence *struct {
					ID string `json:"id"`
				} `json:"Sequence"`
			}
			if err := json.Unmarshal(raw, &item); err != nil {
				return fmt.Errorf("%w: post_processor.single: %w", ErrTokenizer, err)
			}
			switch {
			case item.Sequence != nil:
				seenA = true
			case item.SpecialToken != nil:
				st, ok := p.SpecialTokens[item.SpecialToken.ID]
				if !ok {
					return fmt.Errorf("%w: post_processor: special token %q not in special_tokens", ErrTokenizer, item.SpecialToken.ID)
				}
				if seenA {
					t.sep = append(t.sep, st.IDs...)
				} else {
					t.cls = append(t.cls, st.IDs...)
				}
			}
		}
	case "BertProcessing":
		id := func(pair []json.RawMessage) ([]int32, error) {
			var v int32
			if len(pair) != 2 || json.Unmarshal(pair[1], &v) != nil {
				return nil, fmt.Errorf("%w: post_processor: want [token, id] pairs", ErrTokenizer)
			}
			return []int32{v}, nil
		}
		var err error
		if t.cls, err = id(p.Cls); err != nil {
			return err
		}
		if t.sep, err = id(p.Sep); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%w: post_processor.type is %q; supported: TemplateProcessing, BertProcessing or null", ErrTokenizer, p.Type)
	}
	return nil
}

// Encoding is one tokenised text.
type Encoding struct {
	IDs  []int32
	Mask []int32 // attention mask: 1 for tokens, 0 for padding
	// Tokens is how many tokens are real (not padding), special ones
	// included; Truncated says tokens were dropped to fit MaxLength.
	Tokens    int
	Truncated bool
}

// Encode tokenises one text with special tokens, truncated to maxLen (0:
// the tokenizer's MaxLength) and, if the tokenizer fixes the length, padded
// to it. Batches are padded to their longest with Pad.
func (t *Tokenizer) Encode(text string, maxLen int) Encoding {
	if maxLen <= 0 || (t.MaxLength > 0 && maxLen > t.MaxLength) {
		maxLen = t.MaxLength
	}
	ids := t.tokenize(text)
	special := len(t.cls) + len(t.sep)
	var e Encoding
	if maxLen > 0 && len(ids)+special > maxLen {
		keep := max(maxLen-special, 0)
		ids, e.Truncated = ids[:keep], true
	}
	out := make([]int32, 0, len(ids)+special)
	out = append(out, t.cls...)
	out = append(out, ids...)
	out = append(out, t.sep...)
	e.IDs, e.Tokens = out, len(out)
	e.Mask = make([]int32, len(out))
	for i := range e.Mask {
		e.Mask[i] = 1
	}
	if t.PadFixed > len(out) {
		e = t.Pad(e, t.PadFixed)
	}
	return e
}

// Pad returns e padded with PadID to n tokens (no-op if it is as long).
func (t *Tokenizer) Pad(e Encoding, n int) Encoding {
	for len(e.IDs) < n {
		e.IDs = append(e.IDs, t.PadID)
		e.Mask = append(e.Mask, 0)
	}
	return e
}

// CountTokens is the number of tokens text encodes to, special tokens
// included, without truncation.
func (t *Tokenizer) CountTokens(text string) int {
	return len(t.tokenize(text)) + len(t.cls) + len(t.sep)
}

// tokenize is everything before post-processing: added tokens are split out
// of the raw text first, as Hugging Face does, and the rest is normalised,
// pre-tokenised and run through WordPiece.
func (t *Tokenizer) tokenize(text string) []int32 {
	var ids []int32
	for len(text) > 0 {
		at, tok := len(text), addedToken{}
		for _, a := range t.added {
			if i := strings.Index(text, a.content); i >= 0 && i < at {
				at, tok = i, a
			}
		}
		ids = t.wordpieceText(ids, text[:at])
		if at == len(text) {
			break
		}
		ids = append(ids, tok.id)
		text = text[at+len(tok.content):]
	}
	return ids
}

func (t *Tokenizer) wordpieceText(ids []int32, text string) []int32 {
	for _, w := range preTokenize(t.normalize(text)) {
		ids = t.wordpiece(ids, w)
	}
	return ids
}

// normalize is Hugging Face's BertNormalizer, in its order: clean text,
// pad CJK ideographs, strip accents (NFD, drop Mn), lowercase per rune.
func (t *Tokenizer) normalize(s string) string {
	var b strings.Builder
	for _, r := range s {
		if t.clean {
			if r == 0 || r == utf8.RuneError || isControl(r) {
				continue
			}
			if isWhitespace(r) {
				r = ' '
			}
		}
		if t.chinese && isChinese(r) {
			b.WriteByte(' ')
			b.WriteRune(r)
			b.WriteByte(' ')
			continue
		}
		b.WriteRune(r)
	}
	s = b.String()
	if t.stripAccent {
		b.Reset()
		for _, r := range norm.NFD.String(s) {
			if !unicode.Is(unicode.Mn, r) {
				b.WriteRune(r)
			}
		}
		s = b.String()
	}
	if t.lower {
		b.Reset()
		for _, r := range s {
			if r == 'İ' { // Rust's char::to_lowercase: i + combining dot above
				b.WriteString("i\u0307")
				continue
			}
			b.WriteRune(unicode.ToLower(r))
		}
		s = b.String()
	}
	return s
}

// preTokenize is the BertPreTokenizer: split on whitespace (dropped) and
// on punctuation (each mark its own word).
func preTokenize(s string) []string {
	var words []string
	start := -1
	for i, r := range s {
		switch {
		case unicode.IsSpace(r):
			if start >= 0 {
				words = append(words, s[start:i])
			}
			start = -1
		case isPunct(r):
			if start >= 0 {
				words = append(words, s[start:i])
			}
			words = append(words, string(r))
			start = -1
		default:
			if start < 0 {
				start = i
			}
		}
	}
	if start >= 0 {
		words = append(words, s[start:])
	}
	return words
}

// wordpiece appends word's greedy longest-match-first pieces, or the
// unknown token if any part of it has no piece (or it is too long).
func (t *Tokenizer) wordpiece(ids []int32, word string) []int32 {
	if utf8.RuneCountInString(word) > t.maxWordLen {
		return append(ids, t.unkID)
	}
	n := len(ids)
	for start := 0; start < len(word); {
		end, found := len(word), int32(-1)
		for end > start {
			sub := word[start:end]
			if start > 0 {
				sub = t.prefix + sub
			}
			if id, ok := t.vocab[sub]; ok {
				found = id
				break
			}
			_, size := utf8.DecodeLastRuneInString(word[start:end])
			end -= size
		}
		if found < 0 {
			return append(ids[:n], t.unkID)
		}
		ids = append(ids, found)
		start = end
	}
	return ids
}

// isWhitespace is Hugging Face's BERT whitespace: \t \n \r and Unicode
// White_Space.
func isWhitespace(r rune) bool { return unicode.IsSpace(r) }

// isControl is Hugging Face's BERT control: Unicode "Other" categories,
// except \t \n \r (which count as whitespace).
func isControl(r rune) bool {
	if r == '\t' || r == '\n' || r == '\r' {
		return false
	}
	return unicode.In(r, unicode.Cc, unicode.Cf, unicode.Co, unicode.Cs)
}

// isPunct is BERT punctuation: every ASCII non-alphanumeric printable and
// Unicode P* categories.
func isPunct(r rune) bool {
	if r >= 33 && r <= 47 || r >= 58 && r <= 64 || r >= 91 && r <= 96 || r >= 123 && r <= 126 {
		return true
	}
	return unicode.IsPunct(r)
}

// isChinese is the CJK Unified Ideographs blocks BERT pads with spaces.
func isChinese(r rune) bool {
	switch {
	case r >= 0x4E00 && r <= 0x9FFF, r >= 0x3400 && r <= 0x4DBF,
		r >= 0x20000 && r <= 0x2A6DF, r >= 0x2A700 && r <= 0x2B73F,
		r >= 0x2B740 && r <= 0x2B81F, r >= 0x2B920 && r <= 0x2CEAF,
		r >= 0xF900 && r <= 0xFAFF, r >= 0x2F800 && r <= 0x2FA1F:
		return true
	}
	return false
}

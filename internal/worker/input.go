package worker

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"
)

// Client-facing messages for bad input; tests and users match on them.
const (
	msgMissing = "missing image"
	msgTooBig  = "image too large"
)

// missing reports an absent or empty image. detail goes to the log only:
// clients get exactly "missing image" whatever shape the request had.
func missing(detail string) error {
	var err error
	if detail != "" {
		err = errors.New(detail)
	}
	return &httpError{Code: http.StatusBadRequest, Msg: msgMissing, Err: err}
}

func tooLarge(n, limit int64, exact bool) error {
	q := ""
	if !exact {
		q = "at least "
	}
	return &httpError{Code: http.StatusBadRequest, Msg: fmt.Sprintf("%s: %s%d bytes > limit %d", msgTooBig, q, n, limit)}
}

func notImage(detail string) error {
	return &httpError{Code: http.StatusBadRequest, Msg: "not an image: " + detail}
}

// readImage extracts the image bytes from a request, whichever of the three
// accepted shapes it has: a raw body (image/png, image/jpeg or anything not
// listed below), multipart/form-data (field "image", else the first file),
// or JSON {"image": "<base64 or data: URL>"}. At most limit image bytes are
// read; a body announced larger is refused before reading.
func readImage(r *http.Request, limit int64) ([]byte, error) {
	ct, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch {
	case ct == "multipart/form-data":
		return readMultipart(r, params["boundary"], limit)
	case ct == "application/json" || strings.HasSuffix(ct, "+json"):
		// base64 inflates by 4/3; leave room for the JSON around it.
		b, n, err := readLimited(r, limit/3*4+4<<10)
		if err != nil {
			return nil, err
		}
		if b == nil {
			return nil, tooLarge(n*3/4, limit, false)
		}
		return decodeJSONImage(b, limit)
	default:
		if r.ContentLength > limit {
			return nil, tooLarge(r.ContentLength, limit, true)
		}
		b, n, err := readLimited(r, limit)
		if err != nil {
			return nil, err
		}
		if b == nil {
			return nil, tooLarge(n, limit, r.ContentLength == n)
		}
		if len(b) == 0 {
			return nil, missing("")
		}
		return b, nil
	}
}

// readLimited reads the body. When it exceeds limit bytes it returns nil and
// how much it knows was sent (the announced length, else what it read).
func readLimited(r *http.Request, limit int64) ([]byte, int64, error) {
	if r.ContentLength > limit {
		return nil, r.ContentLength, nil
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, 0, &httpError{Code: http.StatusBadRequest, Msg: "reading body: " + err.Error(), Err: err}
	}
	if int64(len(b)) > limit {
		return nil, int64(len(b)), nil
	}
	return b, int64(len(b)), nil
}

func readMultipart(r *http.Request, boundary string, limit int64) ([]byte, error) {
	if boundary == "" {
		return nil, missing("multipart body without boundary")
	}
	// The whole multipart body is bounded too, not only the image part:
	// the image plus 64 KiB of other fields and part headers.
	bound := limit + 64<<10
	if r.ContentLength > bound {
		return nil, tooLarge(r.ContentLength, limit, false)
	}
	mr := multipart.NewReader(io.LimitReader(r.Body, bound), boundary)
	var first []byte
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, &httpError{Code: http.StatusBadRequest, Msg: "bad multipart body: " + err.Error(), Err: err}
		}
		isImage := p.FormName() == "image"
		if !isImage && (p.FileName() == "" || first != nil) {
			continue // plain fields, and files after the first, are skipped
		}
		b, err := io.ReadAll(io.LimitReader(p, limit+1))
		if err != nil {
			return nil, &httpError{Code: http.StatusBadRequest, Msg: "bad multipart body: " + err.Error(), Err: err}
		}
		if int64(len(b)) > limit {
			return nil, tooLarge(int64(len(b)), limit, false)
		}
		if isImage {
			if len(b) == 0 {
				return nil, missing(`empty "image" field`)
			}
			return b, nil
		}
		first = b
	}
	if len(first) == 0 {
		return nil, missing(`multipart body has no "image" field or file`)
	}
	return first, nil
}

// decodeJSONImage decodes {"image": "..."} where the string is base64
// (standard or URL alphabet, padded or not) or a data: URL.
func decodeJSONImage(body []byte, limit int64) ([]byte, error) {
	var req struct {
		Image *string `json:"image"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, &httpError{Code: http.StatusBadRequest, Msg: "bad JSON body: " + err.Error(), Err: err}
	}
	if req.Image == nil || *req.Image == "" {
		return nil, missing(`JSON body needs "image"`)
	}
	s := strings.TrimSpace(*req.Image)
	if rest, ok := strings.CutPrefix(s, "data:"); ok {
		meta, data, ok := strings.Cut(rest, ",")
		if !ok || !strings.HasSuffix(meta, ";base64") {
			return nil, notImage("data URL must be base64 (data:image/png;base64,...)")
		}
		s = data
	}
	if int64(base64.StdEncoding.DecodedLen(len(s))) > limit+2 {
		return nil, tooLarge(int64(base64.StdEncoding.DecodedLen(len(s))), limit, true)
	}
	b, err := decodeBase64(s)
	if err != nil {
		return nil, notImage("invalid base64: " + err.Error())
	}
	if int64(len(b)) > limit {
		return nil, tooLarge(int64(len(b)), limit, true)
	}
	if len(b) == 0 {
		return nil, missing("")
	}
	return b, nil
}

func decodeBase64(s string) ([]byte, error) {
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == ' ' || r == '\t' {
			return -1
		}
		return r
	}, s)
	enc := base64.StdEncoding
	if strings.ContainsAny(s, "-_") {
		enc = base64.URLEncoding
	}
	if !strings.HasSuffix(s, "=") && len(s)%4 != 0 {
		enc = enc.WithPadding(base64.NoPadding)
	}
	return enc.DecodeString(s)
}

package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"
)

// readResponse reads the instance's response head from c. The plainest
// kind of head — HTTP/1.1, a final status with a body, one Content-Length,
// nothing that changes framing or the connection — is parsed here when it
// is whole in the read buffer, as a small answer on loopback always is.
// Every other head (1xx, chunked, Connection, HTTP/1.0, a head split
// across reads, anything unusual) goes to http.ReadResponse, untouched:
// nothing is consumed before the plain parse accepts, so the framing of
// every response net/http would have to think about is still net/http's.
// The plain parse costs three allocations against net/http's eleven or so.
// FuzzPlainResponse checks that whatever it accepts, net/http reads the
// same way.
func (c *upConn) readResponse(method string) (*http.Response, error) {
	if _, err := c.br.Peek(1); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF // as http.ReadResponse says it
		}
		return nil, err
	}
	if method != http.MethodHead && method != http.MethodConnect {
		head, _ := c.br.Peek(c.br.Buffered())
		if p, ok := parsePlain(head); ok {
			_, _ = c.br.Discard(p.headLen)
			c.body = plainBody{r: c.br, n: p.contentLength}
			c.resp = http.Response{Status: p.status, StatusCode: p.code, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
				Header: p.header, ContentLength: p.contentLength, Body: &c.body, Request: &c.req}
			if p.contentLength == 0 {
				c.resp.Body = http.NoBody
			}
			return &c.resp, nil
		}
	}
	return http.ReadResponse(c.br, &c.req)
}

// plainHead is what parsePlain read.
type plainHead struct {
	headLen       int // bytes of the head, through the blank line
	status        string
	code          int
	header        http.Header
	contentLength int64
}

// parsePlain parses buf's leading response head if it is whole and of the
// plain kind readResponse describes; ok is false for anything else, and
// then nothing of buf was used. It is strict on purpose: a head it refuses
// is not wrong, only left to net/http.
func parsePlain(buf []byte) (p plainHead, ok bool) {
	end := bytes.Index(buf, []byte("\r\n\r\n"))
	if end < 0 {
		return p, false // not whole in the buffer
	}
	p.headLen = end + 4
	// Status line: "HTTP/1.1 NNN[ reason]".
	line, rest, _ := bytes.Cut(buf[:end+2], []byte("\r\n"))
	if len(line) < 12 || string(line[:9]) != "HTTP/1.1 " || (len(line) > 12 && line[12] != ' ') {
		return p, false
	}
	for _, b := range line[9:12] {
		if b < '0' || b > '9' {
			return p, false
		}
	}
	p.code = int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0')
	// 1xx, 204 and 304 have no body whatever their headers say; below 100
	// and above 599 are not statuses.
	if p.code < 200 || p.code > 599 || p.code == http.StatusNoContent || p.code == http.StatusNotModified {
		return p, false
	}
	if !plainValue(line[12:]) {
		return p, false
	}
	// Count the header lines first: one map and one array of values, sized.
	lines := bytes.Count(rest, []byte("\r\n"))
	if lines == 0 {
		return p, false // no Content-Length
	}
	// One string holds the whole head; keys and values are parts of it.
	// (Built only now that the status line passed.)
	s := string(buf[:end+2])
	p.status = s[9:len(line)]
	p.header = make(http.Header, lines)
	values := make([]string, lines)
	sawLength := false
	for off := len(line) + 2; off < len(s); {
		nl := off + strings.Index(s[off:], "\r\n") // s ends with one
		field := s[off:nl]
		off = nl + 2
		colon := -1
		for i := 0; i < len(field); i++ {
			if field[i] == ':' {
				colon = i
				break
			}
			if !isTokenByte(field[i]) {
				return p, false // obs-fold, space before the colon, a bad name
			}
		}
		if colon <= 0 {
			return p, false
		}
		v := field[colon+1:]
		if !plainValue(v) {
			return p, false
		}
		v = trimOWS(v)
		key, canonical := canonicalKey(field[:colon])
		if !canonical {
			return p, false // rare; net/http makes the key
		}
		switch key {
		case "Content-Length":
			if sawLength || !plainLength(v) {
				return p, false
			}
			sawLength = true
			for i := 0; i < len(v); i++ {
				p.contentLength = p.contentLength*10 + int64(v[i]-'0')
			}
		case "Transfer-Encoding", "Connection", "Trailer", "Pragma", "Keep-Alive", "Proxy-Connection", "Upgrade":
			// Framing, the connection's life, trailers, or a header
			// net/http rewrites: its business.
			return p, false
		}
		if vv := p.header[key]; vv != nil {
			p.header[key] = append(vv, v)
		} else {
			values[0] = v
			p.header[key], values = values[:1:1], values[1:]
		}
	}
	if !sawLength {
		return p, false // read to close: net/http's
	}
	return p, true
}

// plainValue: only visible ASCII, space and tab (a strict subset of what
// net/http takes in a field value or reason phrase).
func plainValue[T string | []byte](b T) bool {
	for i := 0; i < len(b); i++ {
		if c := b[i]; (c < ' ' && c != '\t') || c > '~' {
			return false
		}
	}
	return true
}

// plainLength: 1 to 18 digits, no sign, no leading zero but "0".
func plainLength(v string) bool {
	if len(v) == 0 || len(v) > 18 || (len(v) > 1 && v[0] == '0') {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return false
		}
	}
	return true
}

func trimOWS(v string) string {
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	return v
}

// canonicalKey returns k when it is already in net/http's canonical form
// (a capital at the start and after each '-', lower case elsewhere).
func canonicalKey(k string) (string, bool) {
	upper := true
	for i := 0; i < len(k); i++ {
		c := k[i]
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			return "", false
		}
		upper = c == '-'
	}
	return k, true
}

// isTokenByte: a tchar of RFC 9110 5.6.2, which a field name is made of.
func isTokenByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// plainBody is a plain response's body: exactly n bytes of r. A short one
// fails with io.ErrUnexpectedEOF, as net/http's body does.
type plainBody struct {
	r *bufio.Reader
	n int64
}

func (b *plainBody) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.r.Read(p)
	b.n -= int64(n)
	if err == io.EOF {
		if b.n > 0 {
			err = io.ErrUnexpectedEOF
		} else {
			err = nil
		}
	}
	if err == nil && b.n == 0 {
		err = io.EOF
	}
	return n, err
}

func (b *plainBody) Close() error { return nil }

package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// sameAsNetHTTP reads data as a response to method twice, with
// readResponse and with http.ReadResponse, and fails t where they differ:
// error or not, status, headers, framing, the body, and what is left on
// the connection after it. plain reports whether readResponse's own parse
// took it.
func sameAsNetHTTP(t *testing.T, method string, data []byte, oneByte bool) (plain bool) {
	t.Helper()
	src := func() io.Reader {
		if oneByte {
			return iotest.OneByteReader(bytes.NewReader(data))
		}
		return bytes.NewReader(data)
	}
	c := &upConn{br: bufio.NewReaderSize(src(), 4<<10)}
	c.req.Method = method
	got, gerr := c.readResponse(method)
	wbr := bufio.NewReaderSize(src(), 4<<10)
	want, werr := http.ReadResponse(wbr, &http.Request{Method: method})
	if (gerr == nil) != (werr == nil) {
		t.Fatalf("%q: error %v, net/http's %v", data, gerr, werr)
	}
	if gerr != nil {
		return false
	}
	plain = got == &c.resp
	if got.StatusCode != want.StatusCode || got.Status != want.Status || got.Proto != want.Proto ||
		got.ProtoMajor != want.ProtoMajor || got.ProtoMinor != want.ProtoMinor {
		t.Fatalf("%q: status %q %d %s, net/http's %q %d %s", data, got.Status, got.StatusCode, got.Proto, want.Status, want.StatusCode, want.Proto)
	}
	if !reflect.DeepEqual(got.Header, want.Header) {
		t.Fatalf("%q: header %v, net/http's %v", data, got.Header, want.Header)
	}
	if got.ContentLength != want.ContentLength || got.Close != want.Close ||
		!reflect.DeepEqual(got.TransferEncoding, want.TransferEncoding) || !reflect.DeepEqual(got.Trailer, want.Trailer) {
		t.Fatalf("%q: length %d close %v te %v trailer %v, net/http's %d %v %v %v", data,
			got.ContentLength, got.Close, got.TransferEncoding, got.Trailer, want.ContentLength, want.Close, want.TransferEncoding, want.Trailer)
	}
	gb, gerr := io.ReadAll(got.Body)
	wb, werr := io.ReadAll(want.Body)
	if !bytes.Equal(gb, wb) || !errors.Is(gerr, werr) && !(gerr != nil && werr != nil && gerr.Error() == werr.Error()) {
		t.Fatalf("%q: body %q (%v), net/http's %q (%v)", data, gb, gerr, wb, werr)
	}
	if gerr == nil {
		// The next response on the connection starts at the same byte.
		grest, _ := io.ReadAll(c.br)
		wrest, _ := io.ReadAll(wbr)
		if !bytes.Equal(grest, wrest) {
			t.Fatalf("%q: left %q after the body, net/http left %q", data, grest, wrest)
		}
	}
	return plain
}

func TestPlainResponse(t *testing.T) {
	const next = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nn"
	for _, tc := range []struct {
		name, method, data string
		plain              bool // readResponse parses it itself
	}{
		{"plain", "POST", "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\nDate: Mon, 30 Nov 2026 12:00:00 GMT\r\n\r\n{\"output\":\"ok\"}" + next, true},
		{"no reason", "GET", "HTTP/1.1 404\r\nContent-Length: 2\r\n\r\nno", true},
		{"spaces around the value", "GET", "HTTP/1.1 200 OK\r\nContent-Length:  \t2 \r\nX-A:\tb c \r\n\r\nok", true},
		{"empty value", "GET", "HTTP/1.1 200 OK\r\nX-Empty:\r\nContent-Length: 0\r\n\r\n" + next, true},
		{"repeated header", "GET", "HTTP/1.1 500 Oops\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 1\r\n\r\nx", true},
		{"short body", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", true},
		// Left to net/http, which must read them as before.
		{"HEAD", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n" + next, false},
		{"100 Continue", "POST", "HTTP/1.1 100 Continue\r\n\r\n" + next, false},
		{"204", "GET", "HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n" + next, false},
		{"304", "GET", "HTTP/1.1 304 Not Modified\r\nContent-Length: 3\r\n\r\n" + next, false},
		{"HTTP/1.0", "GET", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", false},
		{"no length", "GET", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nto the close", false},
		{"two lengths", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok", false},
		{"two different lengths", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!", false},
		{"length with a sign", "GET", "HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok", false},
		{"length with a leading zero", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 02\r\n\r\nok", false},
		{"chunked", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n2\r\nok\r\n0\r\nX-T: v\r\n\r\n" + next, false},
		{"chunked and a length", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", false},
		{"Connection: close", "GET", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", false},
		{"Pragma", "GET", "HTTP/1.1 200 OK\r\nPragma: no-cache\r\nContent-Length: 2\r\n\r\nok", false},
		{"lower-case name", "GET", "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", false},
		{"space before the colon", "GET", "HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok", false},
		{"obs-fold", "GET", "HTTP/1.1 200 OK\r\nX-A: b\r\n c\r\nContent-Length: 2\r\n\r\nok", false},
		{"bare LF", "GET", "HTTP/1.1 200 OK\nContent-Length: 2\n\nok", false},
		{"control byte in a value", "GET", "HTTP/1.1 200 OK\r\nX-A: b\x01c\r\nContent-Length: 2\r\n\r\nok", false},
		{"non-ASCII value", "GET", "HTTP/1.1 200 OK\r\nX-A: caf\xc3\xa9\r\nContent-Length: 2\r\n\r\nok", false},
		{"status out of range", "GET", "HTTP/1.1 099 Low\r\nContent-Length: 2\r\n\r\nok", false},
		{"not a response", "GET", "hello\r\n\r\n", false},
		{"nothing", "GET", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := sameAsNetHTTP(t, tc.method, []byte(tc.data), false); got != tc.plain {
				t.Errorf("parsed by readResponse itself: %v, want %v", got, tc.plain)
			}
			// A head that arrives a byte at a time is never whole in the
			// buffer at first: net/http reads it.
			if sameAsNetHTTP(t, tc.method, []byte(tc.data), true) {
				t.Error("a head split across reads was parsed by readResponse itself")
			}
		})
	}
}

// FuzzPlainResponse: whatever readResponse parses itself, net/http reads
// the same way, and whatever it leaves to net/http is net/http's answer.
func FuzzPlainResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
		"HTTP/1.1 599 x\r\nX-A: \t\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n",
		"HTTP/1.1 200 OK\r\nA-B-C: d\r\nContent-Length: 3\r\n\r\nabcdef",
	} {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, data string, head bool) {
		method := "POST"
		if head {
			method = "HEAD"
		}
		if strings.Count(data, "\n") > 200 {
			return // net/http's header map growth, not the parse, is what would be slow
		}
		sameAsNetHTTP(t, method, []byte(data), false)
	})
}

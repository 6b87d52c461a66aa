package gateway

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/errkind"
)

// TestSlowBodyIsCut checks the minimum-rate deadline on a real connection:
// a sender that stops mid-body is cut with 408 body_too_slow, whether its
// body is read before the slot (small, chunked) or streams to the instance
// (announced larger than the pre-read size). The grace is short so that the
// deadline, the behaviour under test, passes quickly.
func TestSlowBodyIsCut(t *testing.T) {
	limits := BodyLimits{PreRead: 4 << 10, Budget: 1 << 20, MinRate: 1 << 10, Grace: 200 * time.Millisecond}
	for _, tc := range []struct {
		name   string
		length int64 // announced Content-Length; -1 = chunked
		sent   int   // bytes sent before the sender stalls
	}{
		{"pre-read, chunked", -1, 100},
		{"streamed, announced 1 MiB", 1 << 20, 2 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &Gateway{now: time.Now, bodies: limits, budget: &byteBudget{max: limits.Budget}}
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				br, held, err := g.prepareBody(w, r, 32<<20)
				defer g.budget.give(held)
				if err == nil {
					// Streaming: read on as the proxy would.
					_, rerr := io.Copy(io.Discard, r.Body)
					if rerr == nil {
						w.WriteHeader(http.StatusOK)
						return
					}
					if br == nil {
						t.Errorf("body broke off (%v) with no reader to ask why", rerr)
						return
					}
					err = br.failure(limits)
				}
				var ke *errkind.Error
				if !errors.As(err, &ke) {
					t.Errorf("error %v (%T), want an *errkind.Error", err, err)
					w.WriteHeader(http.StatusInternalServerError)
					return
				}
				w.WriteHeader(ke.Kind.Status())
				io.WriteString(w, ke.Code)
			}))
			defer srv.Close()

			// A raw connection: the sender writes part of the body and then
			// neither sends more nor closes (an http.Client would wait on
			// its stalled body before returning the early answer).
			conn, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			head := "POST / HTTP/1.1\r\nHost: x\r\n"
			part := strings.Repeat("x", tc.sent)
			if tc.length < 0 {
				head += "Transfer-Encoding: chunked\r\n\r\n" + strconv.FormatInt(int64(len(part)), 16) + "\r\n" + part + "\r\n"
			} else {
				head += "Content-Length: " + strconv.FormatInt(tc.length, 10) + "\r\n\r\n" + part
			}
			if _, err := io.WriteString(conn, head); err != nil {
				t.Fatal(err)
			}
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second)) // a bound, not a synchronisation
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("no answer to a stalled body: %v", err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusRequestTimeout || string(b) != "body_too_slow" {
				t.Fatalf("stalled sender got %d %q, want 408 body_too_slow", resp.StatusCode, b)
			}
		})
	}
}

package webhook

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestWebhookPolicy(t *testing.T) {
	local := Policy{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.0.0.0/8")}}
	tests := []struct {
		addr                       string
		byDefault, allowed, listed bool // allowed by default / with --webhook-allow-private / with the allow-list above
	}{
		{"169.254.169.254", false, false, false}, // cloud metadata
		{"::ffff:169.254.169.254", false, false, false},
		{"fe80::1", false, false, false},
		{"0.0.0.0", false, false, false},
		{"224.0.0.1", false, false, false},
		{"127.0.0.1", false, true, true},
		{"::ffff:127.0.0.1", false, true, true},
		{"127.0.0.2", false, true, false},
		{"::1", false, true, false},
		{"10.1.2.3", false, true, true},
		{"192.168.1.10", false, true, false},
		{"fd00::1", false, true, false},
		{"93.184.216.34", true, true, true},
		{"2606:2800:220:1::1", true, true, true},
	}
	for _, tt := range tests {
		a := netip.MustParseAddr(tt.addr)
		for _, c := range []struct {
			name string
			p    Policy
			want bool
		}{{"default", Policy{}, tt.byDefault}, {"--webhook-allow-private", Policy{AllowPrivate: true}, tt.allowed},
			{"--webhook-allow 127.0.0.1/32,10.0.0.0/8", local, tt.listed}} {
			if err := c.p.Check(a); (err == nil) != c.want {
				t.Errorf("%s policy on %s: %v, want allowed=%v", c.name, tt.addr, err, c.want)
			}
		}
	}
}

// The dialer checks the address it connects to, so a URL naming an allowed
// host cannot reach a refused address.
func TestWebhookClientChecksAtDial(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	url := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1) // a name, resolved at dial
	_, err := (Policy{}).Client(5*time.Second).Post(url, "application/json", nil)
	if err == nil || !strings.Contains(err.Error(), "is loopback or private: refused") {
		t.Errorf("default policy to a local receiver: %v, want refused", err)
	}
	allow := Policy{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}}
	if resp, err := allow.Client(5*time.Second).Post(url, "application/json", nil); err != nil {
		t.Fatalf("allow-listed local receiver: %v", err)
	} else {
		resp.Body.Close()
	}
}

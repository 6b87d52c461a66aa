package app

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestWebhookPolicy(t *testing.T) {
	tests := []struct {
		addr                 string
		open, blockedPrivate bool // allowed by default / with --webhook-block-private
	}{
		{"169.254.169.254", false, false}, // cloud metadata
		{"::ffff:169.254.169.254", false, false},
		{"fe80::1", false, false},
		{"0.0.0.0", false, false},
		{"224.0.0.1", false, false},
		{"127.0.0.1", true, false},
		{"::1", true, false},
		{"10.1.2.3", true, false},
		{"192.168.1.10", true, false},
		{"fd00::1", true, false},
		{"93.184.216.34", true, true},
		{"2606:2800:220:1::1", true, true},
	}
	for _, tt := range tests {
		a := netip.MustParseAddr(tt.addr)
		if err := (webhookPolicy{}).check(a); (err == nil) != tt.open {
			t.Errorf("default policy on %s: %v, want allowed=%v", tt.addr, err, tt.open)
		}
		if err := (webhookPolicy{blockPrivate: true}).check(a); (err == nil) != tt.blockedPrivate {
			t.Errorf("--webhook-block-private on %s: %v, want allowed=%v", tt.addr, err, tt.blockedPrivate)
		}
	}
}

// The dialer checks the address it connects to, so a URL naming an allowed
// host cannot reach a refused address.
func TestWebhookClientChecksAtDial(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	url := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1) // a name, resolved at dial
	if resp, err := (webhookPolicy{}).client(5*time.Second).Post(url, "application/json", nil); err != nil {
		t.Fatalf("default policy to a local receiver: %v", err)
	} else {
		resp.Body.Close()
	}
	_, err := (webhookPolicy{blockPrivate: true}).client(5*time.Second).Post(url, "application/json", nil)
	if err == nil || !strings.Contains(err.Error(), "is loopback or private: refused") {
		t.Errorf("blocked policy to a local receiver: %v, want refused", err)
	}
}

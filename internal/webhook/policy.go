// Package webhook holds the policy for where webhooks may be sent (the
// server's SSRF guard) and the HTTP client that enforces it at dial time.
package webhook

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// Policy decides which addresses webhooks may be sent to. A caller
// with an invoke key chooses the webhook URL, so without a policy the
// server would POST wherever it is told: cloud metadata endpoints
// (169.254.169.254), other functions' instance ports on loopback (past
// their scope, limits and metering), the API itself. Link-local, multicast
// and unspecified addresses are always refused; loopback and private ones
// unless the operator allows them all (--webhook-allow-private) or lists
// the networks a receiver lives on (--webhook-allow 127.0.0.1/32).
type Policy struct {
	AllowPrivate bool           // --webhook-allow-private
	Allow        []netip.Prefix // --webhook-allow
}

// Check refuses an address webhooks may not reach.
func (p Policy) Check(a netip.Addr) error {
	a = a.Unmap()
	switch {
	case a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast(), a.IsInterfaceLocalMulticast(), a.IsMulticast(), a.IsUnspecified():
		return fmt.Errorf("address %s is link-local, multicast or unspecified (where cloud metadata endpoints live): refused", a)
	case a.IsLoopback() || a.IsPrivate():
		if p.AllowPrivate {
			return nil
		}
		for _, n := range p.Allow {
			if n.Contains(a) {
				return nil
			}
		}
		return fmt.Errorf("address %s is loopback or private: refused (the server operator can allow it with --webhook-allow CIDR or --webhook-allow-private)", a)
	}
	return nil
}

// Client is the webhook HTTP client: its dialer checks every address it
// connects to, after DNS, so a hostname cannot smuggle a refused address.
func (p Policy) Client(timeout time.Duration) *http.Client {
	d := &net.Dialer{
		Timeout: 5 * time.Second,
		Control: func(network, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("webhook: %w", err)
			}
			return p.Check(ap.Addr())
		},
	}
	tr := &http.Transport{
		Proxy: nil, // a proxy would dial on our behalf, past the check
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: timeout,
	}
	return &http.Client{Transport: tr, Timeout: timeout}
}

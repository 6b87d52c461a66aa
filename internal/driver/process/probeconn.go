package process

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"time"
)

// probeConn is the readiness probe's connection to a starting instance,
// kept open across the listening check and the health GETs (keep-alive),
// so that when the instance is ready it can be handed to the proxy for
// the first request (driver.ConnHandoff): one connection, one handshake,
// one accept in the instance for the probe and the first request. It is
// used by the probe loop's one goroutine only.
type probeConn struct {
	nc net.Conn // nil: none held
}

// take returns the held connection, idle and clean (the last response
// read to its end, nothing buffered behind it), and forgets it.
func (p *probeConn) take() net.Conn {
	nc := p.nc
	p.nc = nil
	return nc
}

func (p *probeConn) drop() {
	if p.nc != nil {
		p.nc.Close()
		p.nc = nil
	}
}

// probeBodyMax is the most of a health response's body read to keep its
// connection; a longer body is not drained, the connection is closed.
const probeBodyMax = 4 << 10

// health makes one GET of url on the held connection (or a new one) and
// reports a 2xx, or what it got. The connection is kept only when the
// exchange ended cleanly and the instance did not ask to close it.
func (p *probeConn) health(ctx context.Context, dialer *net.Dialer, addr, url string, timeout time.Duration) (bool, string) {
	ctx, cancelGrace := graced(ctx)
	defer cancelGrace()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err.Error()
	}
	if p.nc == nil {
		if p.nc, err = dialer.DialContext(ctx, "tcp", addr); err != nil {
			p.nc = nil
			return false, err.Error()
		}
	}
	nc := p.nc
	p.nc = nil // held again below only after a clean exchange
	deadline, _ := ctx.Deadline()
	nc.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(aLongTimeAgo) })
	ok, status, clean := exchangeHealth(nc, req)
	if !stop() || !clean {
		nc.Close()
		if ctx.Err() != nil && status == "" {
			status = ctx.Err().Error()
		}
		return ok, status
	}
	nc.SetDeadline(time.Time{})
	p.nc = nc
	return ok, status
}

// graced returns a context that ends with ctx, except when a readiness
// notification ended ctx: then it ends notifyGrace later, so that a
// connect or health exchange under way (a ready instance finishes it in
// microseconds) keeps its connection for the first request rather than
// throwing it away for a new one that costs as much.
func graced(ctx context.Context) (context.Context, context.CancelFunc) {
	gctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		if errors.Is(context.Cause(ctx), errNotified) {
			time.AfterFunc(notifyGrace, cancel)
			return
		}
		cancel()
	})
	return gctx, func() { stop(); cancel() }
}

var aLongTimeAgo = time.Unix(1, 0)

// errNotified is the cause with which a readiness notification cancels
// the probe loop.
var errNotified = errors.New("instance notified readiness")

// notifyGrace is how long a health exchange under way when the instance
// notifies may still take (a ready instance answers in well under it).
const notifyGrace = 3 * time.Millisecond

// exchangeHealth writes req on nc and reads the answer; clean reports
// whether nc can carry another request.
func exchangeHealth(nc net.Conn, req *http.Request) (ok bool, status string, clean bool) {
	if err := req.Write(nc); err != nil {
		return false, err.Error(), false
	}
	br := bufio.NewReaderSize(nc, 4<<10)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return false, err.Error(), false
	}
	n, err := io.Copy(io.Discard, io.LimitReader(resp.Body, probeBodyMax+1))
	resp.Body.Close()
	ok = resp.StatusCode >= 200 && resp.StatusCode < 300
	clean = err == nil && n <= probeBodyMax && !resp.Close && br.Buffered() == 0 && resp.StatusCode >= 200
	if err != nil && !ok {
		return ok, err.Error(), false
	}
	return ok, resp.Status, clean
}

// Command ui measures what open dashboards cost the server: a real `ember
// serve` process with authentication on, a busy function (a sim instance
// under a steady request rate), first with no dashboard open, then with
// -dashboards signed-in browsers' worth of SSE streams on the function's
// page. It reads the server's CPU time and RSS from /proc (Linux) and
// prints both phases side by side.
//
//	go run ./bench/ui [-dashboards 10] [-rps 200] [-duration 30s]
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ember-run/ember/internal/client"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/ui:", err)
		os.Exit(1)
	}
}

func run() error {
	dashboards := flag.Int("dashboards", 10, "SSE streams open on the function's page in the second phase")
	rps := flag.Int("rps", 200, "requests per second to the busy function in both phases")
	dur := flag.Duration("duration", 30*time.Second, "length of each phase")
	flag.Parse()

	dir, err := os.MkdirTemp("", "ember-bench-ui-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ember, sim := filepath.Join(dir, "ember"), filepath.Join(dir, "sim")
	for _, b := range [][2]string{{ember, "./cmd/ember"}, {sim, "./examples/sim"}} {
		if out, err := exec.Command("go", "build", "-o", b[0], b[1]).CombinedOutput(); err != nil {
			return fmt.Errorf("build %s (run from the repository root): %v\n%s", b[1], err, out)
		}
	}
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	data := filepath.Join(dir, "data")
	srv := exec.Command(ember, "serve", "--addr", addr, "--data-dir", data, "--log-level", "error")
	srv.Stdout, srv.Stderr = os.Stderr, os.Stderr
	if err := srv.Start(); err != nil {
		return err
	}
	defer func() { srv.Process.Signal(os.Interrupt); srv.Wait() }()
	base := "http://" + addr
	key, err := waitReady(base, filepath.Join(data, "admin.key"))
	if err != nil {
		return err
	}
	ctx := context.Background()
	c := client.New(base, key)
	spec := fmt.Sprintf("name: busy\ncommand: [%q]\nscaling: {min: 1, max: 1, concurrency: 0}\n", sim)
	if _, err := c.Deploy(ctx, []byte(spec)); err != nil {
		return err
	}

	fmt.Printf("ember serve pid %d, function busy at %d req/s, phases of %s\n\n", srv.Process.Pid, *rps, *dur)
	fmt.Printf("%-26s %10s %12s %12s %10s %14s\n", "phase", "req/s", "CPU (cores)", "RSS avg MiB", "RSS max", "SSE msgs/s")
	for _, n := range []int{0, *dashboards} {
		res, err := phase(base, key, srv.Process.Pid, *rps, n, *dur)
		if err != nil {
			return err
		}
		fmt.Printf("%-26s %10.0f %12.3f %12.1f %10.1f %14.1f\n", fmt.Sprintf("%d dashboards open", n), res.rps, res.cpu, res.rssAvg, res.rssMax, res.sse)
	}
	return nil
}

type result struct{ rps, cpu, rssAvg, rssMax, sse float64 }

// phase drives the function at rps for d with n SSE streams open (each its
// own signed-in session), and samples the server process.
func phase(base, key string, pid, rps, n int, d time.Duration) (result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	var msgs, done atomic.Int64
	for range n {
		cookie, err := signIn(base, key)
		if err != nil {
			return result{}, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			stream(ctx, base, cookie, &msgs)
		}()
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	tick := time.NewTicker(time.Second / time.Duration(rps))
	defer tick.Stop()
	sem := make(chan struct{}, 64)
	cpu0, err := cpuSeconds(pid)
	if err != nil {
		return result{}, err
	}
	start := time.Now()
	var rssSum, rssMax float64
	var rssN int
	sample := time.NewTicker(250 * time.Millisecond)
	defer sample.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-sample.C:
			if r, err := rssMiB(pid); err == nil {
				rssSum, rssN, rssMax = rssSum+r, rssN+1, max(rssMax, r)
			}
		case <-tick.C:
			select {
			case sem <- struct{}{}:
			default:
				continue // the server is behind: do not pile up
			}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				req, _ := http.NewRequestWithContext(ctx, "POST", base+"/v1/run/busy/predict", strings.NewReader(`{"echo": 1}`))
				req.Header.Set("Authorization", "Bearer "+key)
				if resp, err := hc.Do(req); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == 200 {
						done.Add(1)
					}
				}
			}()
		}
	}
	el := time.Since(start).Seconds()
	cpu1, err := cpuSeconds(pid)
	if err != nil {
		return result{}, err
	}
	wg.Wait()
	return result{rps: float64(done.Load()) / el, cpu: (cpu1 - cpu0) / el, rssAvg: rssSum / float64(max(rssN, 1)),
		rssMax: rssMax, sse: float64(msgs.Load()) / el}, nil
}

func signIn(base, key string) (*http.Cookie, error) {
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.PostForm(base+"/ui/signin", url.Values{"key": {key}})
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	for _, c := range resp.Cookies() {
		if c.Name == "ember_session" {
			return c, nil
		}
	}
	return nil, fmt.Errorf("sign-in answered %d without a session cookie", resp.StatusCode)
}

// stream reads the function page's SSE stream until ctx ends, counting
// messages, as an open browser tab would.
func stream(ctx context.Context, base string, cookie *http.Cookie, msgs *atomic.Int64) {
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/ui/events?page=function&name=busy", nil)
	req.AddCookie(cookie)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 8<<20)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "data: ") {
			msgs.Add(1)
		}
	}
}

// cpuSeconds is the process's user+system CPU time (/proc/pid/stat
// fields 14 and 15, in clock ticks of 1/100 s).
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	k, _ := strconv.ParseFloat(f[12], 64)
	return (u + k) / 100, nil
}

func rssMiB(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024, err
		}
	}
	return 0, errors.New("no VmRSS")
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func waitReady(base, keyFile string) (string, error) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(keyFile); err == nil {
			if resp, err := http.Get(base + "/readyz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return strings.TrimSpace(string(b)), nil
				}
			}
		}
		time.Sleep(20 * time.Millisecond) // polling an external process with a deadline
	}
	return "", errors.New("server not ready within 30s")
}

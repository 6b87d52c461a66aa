package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// nginx is the proxy a user would otherwise put in front of an always-on
// model server: the peer Ember's warm path is measured against. It runs
// with a worker per core, keep-alive upstream connections and the access
// log off, from a config generated into a temp dir, pointing at the same
// sim instance as the other targets.
//
// With a key (-nginx-checks), it also does per-call work comparable to
// Ember's checks: the caller's bearer key compared (a static map, cheaper
// than Ember's lookup of any key), two limit_req zones (per key and per
// server, as Ember limits per key and per function, neither refusing), a
// buffered access log (as Ember meters each call), and the caller's
// Authorization removed before the instance (as Ember does).
type nginx struct {
	url string
	cmd *exec.Cmd
}

// startNginx starts nginx in front of upstream (host:port), with the
// checks above when key is not empty. It returns errNoNginx when no nginx
// binary is on PATH.
func startNginx(ctx context.Context, dir, upstream, key string) (*nginx, error) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		return nil, errNoNginx
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "nginx.conf")
	httpChecks, locationChecks := "access_log off;", ""
	if key != "" {
		httpChecks = fmt.Sprintf(`access_log %s/logs/access.log combined buffer=64k flush=1s;
    limit_req_zone $http_authorization zone=perkey:10m rate=%[2]sr/s;
    limit_req_zone $host zone=perserver:1m rate=%[2]sr/s;
    map_hash_bucket_size 256;
    map $http_authorization $key_ok { "Bearer %[3]s" 1; default 0; }`, dir, strings.TrimSuffix(generousRate, "/s"), key)
		locationChecks = `if ($key_ok = 0) { return 401; }
            limit_req zone=perkey burst=1000000 nodelay;
            limit_req zone=perserver burst=1000000 nodelay;
            proxy_set_header Authorization "";`
	}
	cfg := fmt.Sprintf(`worker_processes %d;
daemon off;
pid %[2]s/nginx.pid;
error_log %[2]s/logs/error.log warn;
events { worker_connections 4096; }
http {
    %[5]s
    client_body_temp_path %[2]s/body;
    proxy_temp_path %[2]s/proxy;
    fastcgi_temp_path %[2]s/fastcgi;
    uwsgi_temp_path %[2]s/uwsgi;
    scgi_temp_path %[2]s/scgi;
    upstream sim {
        server %[3]s;
        keepalive 128;
    }
    server {
        listen 127.0.0.1:%[4]s;
        location / {
            %[6]s
            proxy_pass http://sim;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
}
`, runtime.NumCPU(), dir, upstream, port, httpChecks, locationChecks)
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-p", dir, "-c", conf)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("nginx: %w", err)
	}
	n := &nginx{url: "http://127.0.0.1:" + port, cmd: cmd}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second)
		if err == nil {
			c.Close()
			return n, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			n.stop()
			return nil, fmt.Errorf("nginx did not listen within 10s: %s", stderr.String())
		}
		time.Sleep(5 * time.Millisecond) // polling an external process with a deadline
	}
}

// stop ends nginx's whole process group (master and workers).
func (n *nginx) stop() {
	_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { n.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

// groupCPU is the user+system CPU of every process in n's group so far.
func (n *nginx) groupCPU() time.Duration {
	var total time.Duration
	ents, _ := os.ReadDir("/proc")
	pgid := n.cmd.Process.Pid
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil {
			continue
		}
		if g, err := syscall.Getpgid(pid); err == nil && g == pgid {
			total += procCPU(pid)
		}
	}
	return total
}

var errNoNginx = errors.New("no nginx on PATH")

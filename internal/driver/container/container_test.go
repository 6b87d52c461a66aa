package container

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/moby/moby/api/types/container"

	"github.com/ember-run/ember/internal/driver"
)

func TestParseUlimit(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Ulimit
		err  bool
	}{
		{"nofile=1024:1024", Ulimit{"nofile", 1024, 1024}, false},
		{"nproc=512", Ulimit{"nproc", 512, 512}, false},
		{"nofile=2048:1024", Ulimit{}, true}, // soft above hard
		{"nofile", Ulimit{}, true},
		{"=1:1", Ulimit{}, true},
		{"nofile=x:1", Ulimit{}, true},
	} {
		got, err := ParseUlimit(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseUlimit(%q) = %+v, %v; want %+v, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestValidate(t *testing.T) {
	d, err := New(nil, Options{Host: "unix:///nonexistent.sock", AllowHostPaths: []string{"/srv/models"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		s     driver.StartSpec
		field string // "" = valid
	}{
		{"image only", driver.StartSpec{Image: "ghcr.io/a/b:1"}, ""},
		{"no image", driver.StartSpec{}, "image"},
		{"allowed host path", driver.StartSpec{Image: "i", Volumes: []driver.Volume{{HostPath: "/srv/models/llama", MountPath: "/m"}}}, ""},
		{"host path outside the allow-list", driver.StartSpec{Image: "i", Volumes: []driver.Volume{{HostPath: "/var/run", MountPath: "/m"}}}, "volumes[0].host_path"},
		{"prefix is not a parent", driver.StartSpec{Image: "i", Volumes: []driver.Volume{{HostPath: "/srv/models2", MountPath: "/m"}}}, "volumes[0].host_path"},
		{"named volume", driver.StartSpec{Image: "i", Volumes: []driver.Volume{{Name: "weights", MountPath: "/m"}}}, ""},
		// Whether this machine has the GPU is the allocator's check (app).
		{"gpu", driver.StartSpec{Image: "i", Resources: driver.Resources{GPU: driver.GPU{Type: "l4", Count: 1}}}, ""},
	} {
		err := d.Validate(tc.s)
		var fe *driver.FieldError
		switch {
		case tc.field == "" && err != nil:
			t.Errorf("%s: %v, want valid", tc.name, err)
		case tc.field != "" && (!errors.As(err, &fe) || fe.Field != tc.field):
			t.Errorf("%s: %v, want an error on %s", tc.name, err, tc.field)
		}
	}
}

// TestConfigsIsolate checks what every container gets whatever the spec
// says: no privileges, no capabilities, no-new-privileges, the limits,
// Ember's labels, and the port wiring of each network mode.
func TestConfigsIsolate(t *testing.T) {
	for _, network := range []string{NetworkBridge, NetworkHost} {
		d, err := New(nil, Options{Host: "unix:///nonexistent.sock", Network: network, Owner: "/data",
			Ulimits: []Ulimit{{"nofile", 1024, 1024}}, OCIRuntime: "runc"})
		if err != nil {
			t.Fatal(err)
		}
		s := driver.StartSpec{Function: "f", InstanceID: "f-1", Image: "img", Port: 5000,
			Labels:    driver.Labels{Function: "f", Version: 3, Instance: "f-1"},
			Command:   []string{"--port", "${PORT}"},
			Env:       map[string]string{"PORT": "1", "A": "b"},
			Resources: driver.Resources{CPU: 0.5, MemoryBytes: 64 << 20},
			Volumes:   []driver.Volume{{Name: "weights", MountPath: "/w", ReadOnly: true}},
		}
		cfg, hc, err := d.configs(s, []string{"TOKEN=x"}, 40000)
		if err != nil {
			t.Fatal(err)
		}
		wantPort := map[string]string{NetworkBridge: "5000", NetworkHost: "40000"}[network]
		if hc.Privileged || !slices.Equal(hc.CapDrop, []string{"ALL"}) || !slices.Contains(hc.SecurityOpt, "no-new-privileges") {
			t.Errorf("%s: isolation = privileged %v capdrop %v secopt %v", network, hc.Privileged, hc.CapDrop, hc.SecurityOpt)
		}
		if hc.NanoCPUs != 5e8 || hc.Memory != 64<<20 || hc.MemorySwap != 64<<20 || hc.Runtime != "runc" || len(hc.Ulimits) != 1 {
			t.Errorf("%s: limits = cpu %d mem %d swap %d runtime %q ulimits %v", network, hc.NanoCPUs, hc.Memory, hc.MemorySwap, hc.Runtime, hc.Ulimits)
		}
		if string(hc.NetworkMode) != network {
			t.Errorf("network mode = %q, want %q", hc.NetworkMode, network)
		}
		if cfg.Env[len(cfg.Env)-3] != "PORT="+wantPort || !slices.Contains(cfg.Env, "TOKEN=x") {
			t.Errorf("%s: env = %v, want PORT=%s last (the driver's wins)", network, cfg.Env, wantPort)
		}
		if strings.Join(cfg.Cmd, " ") != "--port "+wantPort {
			t.Errorf("%s: cmd = %v", network, cfg.Cmd)
		}
		if l, ok := driver.ParseLabels(cfg.Labels); !ok || l.Version != 3 || cfg.Labels[LabelOwner] != "/data" {
			t.Errorf("labels = %v", cfg.Labels)
		}
		if len(hc.Mounts) != 1 || hc.Mounts[0].Source != "ember-weights" || !hc.Mounts[0].ReadOnly {
			t.Errorf("mounts = %+v", hc.Mounts)
		}
		if network == NetworkBridge {
			if len(hc.PortBindings) != 1 {
				t.Errorf("port bindings = %v", hc.PortBindings)
			}
			for _, b := range hc.PortBindings {
				if b[0].HostIP.String() != "127.0.0.1" || b[0].HostPort != "40000" {
					t.Errorf("binding = %+v, want 127.0.0.1:40000", b[0])
				}
			}
		} else if len(hc.PortBindings) != 0 {
			t.Errorf("host network publishes %v", hc.PortBindings)
		}
	}
}

// TestConfigsGPUs: the assigned GPUs, and only those, become the device
// request of the configured kind; none assigned, none requested.
func TestConfigsGPUs(t *testing.T) {
	for _, tc := range []struct {
		driver  string
		devices []string
		want    []container.DeviceRequest
	}{
		{GPUNvidia, nil, nil},
		{GPUNvidia, []string{"GPU-a", "GPU-b"}, []container.DeviceRequest{{Driver: "nvidia", DeviceIDs: []string{"GPU-a", "GPU-b"}, Capabilities: [][]string{{"gpu"}}}}},
		{GPUCDI, []string{"GPU-a"}, []container.DeviceRequest{{Driver: "cdi", DeviceIDs: []string{"nvidia.com/gpu=GPU-a"}}}},
	} {
		d, err := New(nil, Options{Host: "unix:///nonexistent.sock", GPUDriver: tc.driver})
		if err != nil {
			t.Fatal(err)
		}
		s := driver.StartSpec{Function: "f", InstanceID: "f-1", Image: "img", GPUDevices: tc.devices,
			Resources: driver.Resources{GPU: driver.GPU{Type: "a100-40gb", Count: len(tc.devices)}}}
		_, hc, err := d.configs(s, nil, 40000)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(hc.DeviceRequests, tc.want) {
			t.Errorf("%s %v: device requests = %+v, want %+v", tc.driver, tc.devices, hc.DeviceRequests, tc.want)
		}
	}
	if _, err := New(nil, Options{Host: "unix:///nonexistent.sock", GPUDriver: "amd"}); err == nil {
		t.Error("GPUDriver amd accepted")
	}
}

// A container whose health path answers at once is ready after one GET:
// the listening check's answer serves as the first health check. One
// that answers non-2xx at first is probed again until it says 2xx.
func TestWaitReadyOneGETServesListeningAndHealth(t *testing.T) {
	for _, tc := range []struct {
		name     string
		failures int32 // 503s before the first 200
		want     int32 // GETs of /health in all
	}{
		{"ready at once", 0, 1},
		{"ready after two 503s", 2, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var gets, others, conns atomic.Int32
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/health" {
					others.Add(1)
					return
				}
				if gets.Add(1) <= tc.failures {
					w.WriteHeader(http.StatusServiceUnavailable)
				}
			}))
			srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
				if s == http.StateNew {
					conns.Add(1)
				}
			}
			srv.Start()
			defer srv.Close()
			for _, network := range []string{NetworkHost, NetworkBridge} {
				gets.Store(0)
				conns.Store(0)
				d, err := New(nil, Options{Host: "unix:///nonexistent.sock", Network: network})
				if err != nil {
					t.Fatal(err)
				}
				inst := &Instance{d: d, addr: srv.Listener.Addr().String(), done: make(chan struct{})}
				if err := d.waitReady(t.Context(), inst, driver.StartSpec{HealthPath: "health"}); err != nil {
					t.Fatalf("%s: waitReady = %v", network, err)
				}
				if got := gets.Load(); got != tc.want {
					t.Errorf("%s: GETs of /health = %d, want %d", network, got, tc.want)
				}
				if got := conns.Load(); got != tc.want {
					t.Errorf("%s: connections = %d, want %d (one per GET, no bare connect)", network, got, tc.want)
				}
				var names []string
				for _, p := range inst.Phases() {
					names = append(names, p.Name)
				}
				if want := []string{driver.PhaseListening, driver.PhaseReady}; !slices.Equal(names, want) {
					t.Errorf("%s: phases = %v, want %v", network, names, want)
				}
			}
			if n := others.Load(); n != 0 {
				t.Errorf("%d requests to other paths than /health", n)
			}
		})
	}
}

// fakeEngineDriver is a driver on the fake engine srv, and a spec to
// create with.
func fakeEngineDriver(t *testing.T, srv *httptest.Server) (*Driver, driver.StartSpec) {
	t.Helper()
	d, err := New(nil, Options{Host: "tcp://" + srv.Listener.Addr().String(), Owner: "/data"})
	if err != nil {
		t.Fatal(err)
	}
	return d, driver.StartSpec{Function: "f", InstanceID: "f-1", Image: "img", Port: 5000,
		Labels: driver.Labels{Function: "f", Version: 1, Instance: "f-1"}}
}

// TestCreateCancelledRemovesWhatTheEngineMade: a create whose caller gives
// up while the engine is still creating must not leave the container the
// engine made after all (it would outlive the server, unknown to it).
func TestCreateCancelledRemovesWhatTheEngineMade(t *testing.T) {
	gotCreate, answer := make(chan struct{}), make(chan struct{})
	removed := make(chan string, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/containers/create"):
			close(gotCreate)
			<-answer // the engine finishes whether or not the caller waits
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			w.Write([]byte(`{"Id":"c0ffee"}`))
		case r.Method == http.MethodDelete && strings.Contains(r.URL.Path, "/containers/"):
			removed <- r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
			w.WriteHeader(http.StatusNoContent)
		default:
			http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusTeapot)
		}
	}))
	defer srv.Close()
	d, s := fakeEngineDriver(t, srv)
	ctx, cancel := context.WithCancel(context.Background())
	type result struct {
		c   *created
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := d.create(ctx, s, nil)
		done <- result{c, err}
	}()
	<-gotCreate
	cancel()
	close(answer)
	res := <-done
	if res.c != nil || !errors.Is(res.err, context.Canceled) {
		t.Fatalf("create after cancel = %+v, %v; want no container and context.Canceled", res.c, res.err)
	}
	select {
	case id := <-removed:
		if id != "c0ffee" {
			t.Errorf("removed %q, want the container the engine created (c0ffee)", id)
		}
	default:
		t.Fatal("the container the engine created after the cancel was not removed")
	}
}

// TestCreateConflictRemovesNothing: a create refused because the name is
// taken leaves that container alone, even when the caller gave up
// meanwhile: it is not this create's.
func TestCreateConflictRemovesNothing(t *testing.T) {
	var removed atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/containers/create"):
			cancel()
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusConflict)
			w.Write([]byte(`{"message":"the container name is already in use"}`))
		case r.Method == http.MethodDelete:
			removed.Add(1)
			w.WriteHeader(http.StatusNoContent)
		default:
			http.Error(w, "unexpected", http.StatusTeapot)
		}
	}))
	defer srv.Close()
	d, s := fakeEngineDriver(t, srv)
	if _, err := d.create(ctx, s, nil); err == nil {
		t.Fatal("create succeeded, want the conflict")
	}
	if n := removed.Load(); n != 0 {
		t.Errorf("%d removals after a name conflict, want none", n)
	}
	if _, err := d.create(ctx, s, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("create with the caller gone = %v, want context.Canceled without asking the engine", err)
	}
}

package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The CLI finds its server and key: flags > environment > `ember login`'s
// config (for its own server only) > <data-dir>/admin.key (loopback only).
func TestResolve(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, ".config"))
	work := t.TempDir()
	t.Chdir(work)
	keyFile := filepath.Join(work, "k")
	os.WriteFile(keyFile, []byte("from-key-file\n"), 0o600)
	dataDir := filepath.Join(work, "dd")
	os.MkdirAll(dataDir, 0o700)
	os.WriteFile(filepath.Join(dataDir, "admin.key"), []byte("from-data-dir\n"), 0o600)
	os.MkdirAll(".ember", 0o700)
	os.WriteFile(".ember/admin.key", []byte("from-dot-ember\n"), 0o600)
	cfg, _ := configPath()

	tests := []struct {
		name       string
		g          globals
		env        map[string]string
		login      *login
		server     string
		key        string
		missing    string // the no-key message when key is ""
		wantErrSub string
	}{
		{name: "defaults read ./.ember/admin.key", server: "http://127.0.0.1:8080", key: "from-dot-ember"},
		{name: "bare host:port gets http://", g: globals{server: "127.0.0.1:18080"}, server: "http://127.0.0.1:18080", key: "from-dot-ember"},
		{name: "flag key beats everything", g: globals{key: "flag"}, env: map[string]string{"EMBER_API_KEY": "env"}, login: &login{"http://127.0.0.1:8080", "cfg"}, server: "http://127.0.0.1:8080", key: "flag"},
		{name: "key file flag", g: globals{keyFile: keyFile}, env: map[string]string{"EMBER_API_KEY": "env"}, server: "http://127.0.0.1:8080", key: "from-key-file"},
		{name: "env beats config", env: map[string]string{"EMBER_API_KEY": "env"}, login: &login{"http://127.0.0.1:8080", "cfg"}, server: "http://127.0.0.1:8080", key: "env"},
		{name: "config gives server and key", login: &login{"https://ember.example.com", "cfg"}, server: "https://ember.example.com", key: "cfg"},
		{name: "env server beats config", env: map[string]string{"EMBER_SERVER": "10.0.0.1:9"}, login: &login{"https://ember.example.com", "cfg"}, server: "http://10.0.0.1:9",
			missing: `no API key: looked in --api-key, --key-file, EMBER_API_KEY, EMBER_KEY_FILE, ~/.config/ember/config (it holds https://ember.example.com, not http://10.0.0.1:9), ./.ember/admin.key (only for a server on this machine); run "ember login" or pass --api-key`},
		{name: "config beats data dir", login: &login{"http://127.0.0.1:8080", "cfg"}, g: globals{dataDir: dataDir}, server: "http://127.0.0.1:8080", key: "cfg"},
		{name: "data dir flag", g: globals{dataDir: dataDir}, server: "http://127.0.0.1:8080", key: "from-data-dir"},
		{name: "data dir env", env: map[string]string{"EMBER_DATA_DIR": dataDir}, server: "http://127.0.0.1:8080", key: "from-data-dir"},
		{name: "nothing found says where it looked", g: globals{dataDir: filepath.Join(work, "none")}, server: "http://127.0.0.1:8080",
			missing: `no API key: looked in --api-key, --key-file, EMBER_API_KEY, EMBER_KEY_FILE, ~/.config/ember/config, ` + filepath.Join(work, "none", "admin.key") + `; run "ember login" or pass --api-key`},
		{name: "missing key file is an error", g: globals{keyFile: filepath.Join(work, "nope")}, wantErrSub: "API key from --key-file: open"},
		{name: "bad server", g: globals{server: "ftp://x"}, wantErrSub: `invalid server "ftp://x": want http://host:port, https://host or host:port`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.Remove(cfg)
			if tt.login != nil {
				if err := writeLogin(cfg, *tt.login); err != nil {
					t.Fatal(err)
				}
			}
			lookup := func(k string) (string, bool) {
				if k == "HOME" {
					return home, true
				}
				v, ok := tt.env[k]
				return v, ok
			}
			got, err := resolve(&tt.g, lookup)
			if tt.wantErrSub != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErrSub) {
					t.Fatalf("err = %v, want %q", err, tt.wantErrSub)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.server != tt.server || got.key != tt.key {
				t.Errorf("server, key = %q, %q; want %q, %q", got.server, got.key, tt.server, tt.key)
			}
			if tt.missing != "" && got.missingKey() != tt.missing {
				t.Errorf("missing key message =\n  %s\nwant\n  %s", got.missingKey(), tt.missing)
			}
		})
	}
}

func TestLoginStoresPrivately(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	cfg, _ := configPath()
	if err := writeLogin(cfg, login{Server: "http://a:1", APIKey: "k"}); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{cfg: 0o600, filepath.Dir(cfg): 0o700} {
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v (%v), want %v", path, fi.Mode().Perm(), err, want)
		}
	}
	l, err := readLogin(cfg)
	if err != nil || l != (login{Server: "http://a:1", APIKey: "k"}) {
		t.Errorf("read back %+v, %v", l, err)
	}
}

package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"sigs.k8s.io/yaml"

	"github.com/ember-run/ember/internal/auth"
	"github.com/ember-run/ember/internal/client"
)

const defaultServer = "http://127.0.0.1:8080"

// defaultDataDir is where `ember serve` keeps its data unless told.
const defaultDataDir = "./.ember"

// login is what `ember login` stores: one server and its key, like the
// current context of kubectl or gh's hosts file.
type login struct {
	Server string `json:"server"`
	APIKey string `json:"api_key"`
}

// configPath is <user config dir>/ember/config ($XDG_CONFIG_HOME or
// ~/.config on Linux and other Unixes, ~/Library/Application Support on
// macOS).
func configPath() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("no user config dir: %w", err)
	}
	return filepath.Join(dir, "ember", "config"), nil
}

func readLogin(path string) (login, error) {
	var l login
	b, err := os.ReadFile(path)
	if err != nil {
		return l, err
	}
	if err := yaml.UnmarshalStrict(b, &l); err != nil {
		return l, fmt.Errorf("%s: not an ember config (run \"ember login\" again): %w", path, err)
	}
	return l, nil
}

// writeLogin stores l at path (0600) in a 0700 directory, through a
// temporary file and a rename, so a reader never sees half a file.
func writeLogin(path string, l login) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	b, err := yaml.Marshal(l)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".config-*") // mode 0600
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// normalizeServer accepts a URL or a bare host:port (http:// assumed).
func normalizeServer(s string) (string, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", fmt.Errorf("invalid server %q: want http://host:port, https://host or host:port", strings.TrimPrefix(s, "http://"))
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// target is where client commands go, and how the key was found.
type target struct {
	server string
	key    string
	// looked lists the places searched for a key, for the missing-key error.
	looked []string
}

func (t target) missingKey() string {
	return fmt.Sprintf("no API key: looked in %s; run \"ember login\" or pass --api-key", strings.Join(t.looked, ", "))
}

// resolve finds the server and key: flags, then the environment, then
// the config `ember login` wrote, then <data-dir>/admin.key of a server
// on this machine. The config's key is used only for the server it was
// stored with, and admin.key only for a loopback server, so no key goes
// to a server it was not made for.
func resolve(g *globals, lookup func(string) (string, bool)) (target, error) {
	env := func(k string) string { v, _ := lookup(k); return strings.TrimSpace(v) }
	var t target

	cfgPath, cfgErr := configPath()
	var cfg login
	haveCfg := false
	if cfgErr == nil {
		var err error
		cfg, err = readLogin(cfgPath)
		switch {
		case err == nil:
			haveCfg = true
		case !errors.Is(err, fs.ErrNotExist):
			return t, err
		}
	}

	server := g.server
	for _, v := range []string{env("EMBER_SERVER"), env("EMBER_URL"), cfg.Server, defaultServer} {
		if server == "" {
			server = v
		}
	}
	s, err := normalizeServer(server)
	if err != nil {
		return t, err
	}
	t.server = s

	readFile := func(from, path string) (string, error) {
		k, err := auth.ReadKeyFile(path)
		if err != nil {
			return "", fmt.Errorf("API key from %s: %w", from, err)
		}
		return k, nil
	}
	switch {
	case g.key != "":
		t.key = g.key
		return t, nil
	case g.keyFile != "":
		t.key, err = readFile("--key-file", g.keyFile)
		return t, err
	case env("EMBER_API_KEY") != "":
		t.key = env("EMBER_API_KEY")
		return t, nil
	case env("EMBER_KEY_FILE") != "":
		t.key, err = readFile("EMBER_KEY_FILE", env("EMBER_KEY_FILE"))
		return t, err
	}
	t.looked = []string{"--api-key", "--key-file", "EMBER_API_KEY", "EMBER_KEY_FILE"}

	if cfgErr == nil {
		shown := tildePath(cfgPath, lookup)
		if cfgServer, err := normalizeServer(cfg.Server); haveCfg && err == nil && cfgServer == t.server && cfg.APIKey != "" {
			t.key = cfg.APIKey
			return t, nil
		} else if haveCfg {
			shown += fmt.Sprintf(" (it holds %s, not %s)", cfg.Server, t.server)
		}
		t.looked = append(t.looked, shown)
	}

	dataDir := g.dataDir
	for _, v := range []string{env("EMBER_DATA_DIR"), defaultDataDir} {
		if dataDir == "" {
			dataDir = v
		}
	}
	keyPath := filepath.Join(dataDir, auth.AdminKeyFile)
	if dataDir == defaultDataDir {
		keyPath = defaultDataDir + "/" + auth.AdminKeyFile // as the user would type it
	}
	if !loopback(t.server) {
		t.looked = append(t.looked, keyPath+" (only for a server on this machine)")
		return t, nil
	}
	if k, err := auth.ReadKeyFile(keyPath); err == nil && k != "" {
		t.key = k
		return t, nil
	}
	t.looked = append(t.looked, keyPath)
	return t, nil
}

// loopback reports whether server's host is localhost or a loopback IP.
func loopback(server string) bool {
	u, err := url.Parse(server)
	if err != nil {
		return false
	}
	h := u.Hostname()
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// tildePath shows path under $HOME as ~/..., as users write it.
func tildePath(path string, lookup func(string) (string, bool)) string {
	if home, ok := lookup("HOME"); ok && home != "" {
		if rel, err := filepath.Rel(home, path); err == nil && !strings.HasPrefix(rel, "..") {
			return "~/" + filepath.ToSlash(rel)
		}
	}
	return path
}

func newLoginCmd(g *globals) *cobra.Command {
	var noVerify bool
	cmd := &cobra.Command{
		Use:   "login [SERVER]",
		Short: "Store a server URL and API key for later commands",
		Long: `Store a server URL and its API key in the user's config dir
(` + "`$XDG_CONFIG_HOME/ember/config`" + `, by default ~/.config/ember/config on Linux and
~/Library/Application Support/ember/config on macOS; file mode 0600, dir 0700),
so later commands find the server from any directory.

The key is read from --key-file, or from standard input (typed without echo on a
terminal); it is never taken from the command line. The server is checked to
accept the key before it is stored (--no-verify skips that).

Later commands look for the server and key in this order: flags (--server,
--api-key, --key-file), the environment (EMBER_SERVER, EMBER_API_KEY,
EMBER_KEY_FILE), this config (its key only for its own server), then
<data-dir>/admin.key of a server on this machine (--data-dir, EMBER_DATA_DIR,
default ./.ember).`,
		Example: `  ember login 127.0.0.1:8080 --key-file ./.ember/admin.key
  ember login https://ember.example.com < key.txt`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if g.key != "" {
				return errors.New("ember login reads the key from standard input or --key-file, not --api-key (a key on the command line stays in shell history)")
			}
			server := g.server
			if len(args) == 1 {
				server = args[0]
			}
			if server == "" {
				if v, ok := os.LookupEnv("EMBER_SERVER"); ok && v != "" {
					server = v
				} else {
					server = defaultServer
				}
			}
			server, err := normalizeServer(server)
			if err != nil {
				return err
			}
			var key string
			if g.keyFile != "" {
				if key, err = auth.ReadKeyFile(g.keyFile); err != nil {
					return fmt.Errorf("--key-file: %w", err)
				}
			} else if key, err = readKey(cmd, server); err != nil {
				return err
			}
			key = strings.TrimSpace(key)
			if key == "" || strings.ContainsAny(key, " \t\r\n") {
				return errors.New("no API key read: give one line holding the key (from `ember keys create` or <data-dir>/admin.key)")
			}
			if !noVerify {
				if err := verifyKey(cmd, server, key); err != nil {
					return err
				}
			}
			path, err := configPath()
			if err != nil {
				return err
			}
			if err := writeLogin(path, login{Server: server, APIKey: key}); err != nil {
				return fmt.Errorf("store login: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "logged in to %s (saved to %s)\n", server, path)
			return nil
		},
	}
	cmd.Flags().BoolVar(&noVerify, "no-verify", false, "store the key without asking the server")
	return cmd
}

// readKey reads one key from stdin: without echo from a terminal, else
// its first line.
func readKey(cmd *cobra.Command, server string) (string, error) {
	in := cmd.InOrStdin()
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprintf(cmd.ErrOrStderr(), "API key for %s: ", server)
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(cmd.ErrOrStderr())
		return string(b), err
	}
	line, err := bufio.NewReader(io.LimitReader(in, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read API key from stdin: %w", err)
	}
	return line, nil
}

// verifyKey asks the server whether it accepts key: a 403 (a key without
// the right to list functions) still proves the key is known.
func verifyKey(cmd *cobra.Command, server, key string) error {
	_, err := client.New(server, key).Functions(cmd.Context())
	var ce *client.Error
	switch {
	case err == nil, errors.As(err, &ce) && ce.Status == http.StatusForbidden:
		return nil
	case errors.As(err, &ce) && ce.Status == http.StatusUnauthorized:
		return fmt.Errorf("%s refused this key: %s", server, ce.Message)
	}
	return fmt.Errorf("%w (--no-verify stores the key anyway)", err)
}

func newLogoutCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "logout",
		Short: "Forget the server and key stored by ember login",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := configPath()
			if err != nil {
				return err
			}
			switch err := os.Remove(path); {
			case errors.Is(err, fs.ErrNotExist):
				fmt.Fprintf(cmd.OutOrStdout(), "not logged in (no %s)\n", path)
			case err != nil:
				return err
			default:
				fmt.Fprintf(cmd.OutOrStdout(), "logged out (removed %s)\n", path)
			}
			return nil
		},
	}
}

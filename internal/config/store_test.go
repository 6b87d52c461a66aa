package config

import (
	"strings"
	"testing"
)

func TestStoreKind(t *testing.T) {
	tests := []struct {
		store, kind, where, err string
	}{
		{"", "sqlite", "data/ember.db", ""},
		{"sqlite:///var/lib/ember/ember.db", "sqlite", "/var/lib/ember/ember.db", ""},
		{"postgres://u:pw@db:5432/ember", "postgres", "postgres://u:pw@db:5432/ember", ""},
		{"postgresql://db/ember", "postgres", "postgresql://db/ember", ""},
		{"sqlite://", "", "", "sqlite:// needs a path"},
		{"mysql://u:secretpw@db/ember", "", "", `got scheme "mysql"`},
		{"u:secretpw@db/ember", "", "", `got scheme "(none)"`},
	}
	for _, tc := range tests {
		c := Default()
		c.DataDir, c.Store = "data", tc.store
		kind, where, err := c.StoreKind()
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || strings.Contains(err.Error(), "secretpw") {
				t.Errorf("%q: err = %v, want one saying %q without the password", tc.store, err, tc.err)
			}
			if verr := c.Validate(); verr == nil || !strings.HasPrefix(verr.Error(), "store: ") {
				t.Errorf("%q: Validate = %v, want a store: error", tc.store, verr)
			}
			continue
		}
		if err != nil || kind != tc.kind || where != tc.where {
			t.Errorf("%q: %q %q %v, want %q %q", tc.store, kind, where, err, tc.kind, tc.where)
		}
	}
}

func TestClusterTokenSettings(t *testing.T) {
	c := Default()
	c.ClusterTokenFile, c.ClusterToken = "/run/secrets/cluster/token", "x"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "cluster-token-file and EMBER_CLUSTER_TOKEN: set one, not both") {
		t.Fatalf("both set: %v", err)
	}
	c.ClusterToken = ""
	if err := c.Validate(); err != nil {
		t.Fatalf("file only: %v", err)
	}
}

// Command ember is the Ember server and CLI.
package main

import (
	"context"
	"os"

	"github.com/ember-run/ember/internal/app"
	"github.com/ember-run/ember/internal/cli"
)

func main() {
	// Process-wide, so here rather than in the server's code: GOGC, when
	// set, wins (internal/app/gc.go says why the default differs).
	app.SetGCDefault(os.Getenv)
	os.Exit(cli.Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

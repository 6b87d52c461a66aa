// Command ember is the Ember server and CLI.
package main

import (
	"context"
	"os"

	"github.com/ember-run/ember/internal/cli"
)

func main() {
	os.Exit(cli.Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

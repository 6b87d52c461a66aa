package cli

import "github.com/spf13/cobra"

// extraCommands are the commands of the feature areas beyond the core.
func extraCommands(g *globals) []*cobra.Command {
	return nil
}

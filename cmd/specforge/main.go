// Command specforge trains EAGLE-3 speculative-decoding draft models for Llama-family targets and runs them.
//
//	specforge generate --model DIR --prompt-ids "1"
//	specforge convert llama2c --checkpoint stories260K.bin --out DIR
//
// Run "specforge help" for every command.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	if err := rootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "specforge:", err)
		os.Exit(1)
	}
}

func rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "specforge",
		Short:         "Train and evaluate EAGLE-3 speculative-decoding draft models",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(convertCommand(), generateCommand(), prepareDataCommand())
	return root
}

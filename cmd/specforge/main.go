// Command specforge trains EAGLE-3 speculative-decoding draft models for Llama-family targets and runs them.
//
//	specforge generate --model DIR --prompt-ids "1"
//	specforge convert llama2c --checkpoint stories260K.bin --out DIR
//
// Run "specforge help" for every command.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/specforge/specforge/internal/mpi"
)

func main() {
	// The one context of the process: Ctrl-C or SIGTERM cancels it, and long jobs stop at their next safe
	// point (training after saving a checkpoint). Once it is cancelled the signals act as by default again,
	// so a second Ctrl-C ends a job that is slow to stop.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	context.AfterFunc(ctx, stop)
	err := rootCommand().ExecuteContext(ctx)
	interrupted := ctx.Err() != nil
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "specforge: "+mpi.RankPrefix()+err.Error())
	}
	status := exitStatus(err, interrupted)
	mpi.Finish(status, err != nil && !interrupted) // a data-parallel rank leaves the job (a failing one ends it)
	os.Exit(status)
}

// exitStatus is 0 on success, 130 (128 + SIGINT, as shells report) for a job stopped by Ctrl-C or SIGTERM
// after saving what it had, so that scripts can tell an interruption from a failure, and 1 otherwise.
func exitStatus(err error, interrupted bool) int {
	switch {
	case err == nil:
		return 0
	case interrupted:
		return 130
	}
	return 1
}

func rootCommand() *cobra.Command {
	var cpuProfile string
	var profileFile *os.File
	root := &cobra.Command{
		Use:           "specforge",
		Short:         "Train and evaluate EAGLE-3 speculative-decoding draft models",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if cpuProfile == "" {
				return nil
			}
			f, err := os.Create(cpuProfile)
			if err != nil {
				return fmt.Errorf("--cpuprofile: %w", err)
			}
			profileFile = f
			return pprof.StartCPUProfile(f)
		},
		PersistentPostRun: func(cmd *cobra.Command, args []string) {
			if profileFile != nil {
				pprof.StopCPUProfile()
				profileFile.Close()
			}
		},
	}
	root.PersistentFlags().StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile (go tool pprof) to this file")
	root.AddCommand(convertCommand(), generateCommand(), prepareDataCommand(), trainCommand(), genHiddenCommand(), inspectCommand(), importHiddenCommand(), captureServerCommand(), benchCommand(), exportCommand(), serveCommand())
	return root
}

// Command reuse shows the reuse package at work on this machine.
//
//	reuse demo [-workers N] [-conns M]   N processes share one port; M connections spread across them
//	reuse probe [-json | -markdown]      bind real sockets and print this machine's port-sharing rules
//
// Run "reuse help" for every subcommand.
package main

import (
	"fmt"
	"io"
	"os"
	"sort"
)

// subcommand is one verb of the command.
type subcommand struct {
	summary string
	run     func(args []string, stdout io.Writer) error
}

// subcommands maps each verb to its implementation; each lives in a file of its own.
var subcommands = map[string]subcommand{
	"demo":    {"N worker processes share one loopback port; M connections show how the kernel spreads them", runDemo},
	"probe":   {"bind real sockets and print this machine's port-sharing rules (-json, -markdown)", runProbe},
	"restart": {"restart a server under load N times, with a handover or (-naive) without; count lost connections", runRestart},
}

func main() {
	if name := os.Getenv(envWorker); name != "" {
		os.Exit(runWorker(name, os.Args[1:]))
	}
	if len(os.Args) < 2 || os.Args[1] == "help" || os.Args[1] == "-h" || os.Args[1] == "--help" {
		usage(os.Stdout)
		return
	}
	sc, ok := subcommands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "reuse: unknown subcommand %q\n", os.Args[1])
		usage(os.Stderr)
		os.Exit(2)
	}
	if err := sc.run(os.Args[2:], os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "reuse %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: reuse <subcommand> [flags]")
	names := make([]string, 0, len(subcommands))
	for n := range subcommands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n", n, subcommands[n].summary)
	}
}

// The command behaves as a program of a module whose go line is 1.24 or
// later: its listeners are MPTCP where the kernel allows it.
//
//go:debug multipathtcp=2

// Command reuse shows the reuse package at work on this machine.
//
// Install it with
//
//	go install github.com/sockreuse/reuse/cmd/reuse@latest
//
// or run it from a clone of the repository with "go run ./cmd/reuse".
//
// Usage:
//
//	reuse demo [-workers N] [-conns M] [-addr host:port]
//	reuse probe [-json | -markdown]
//	reuse who [-json] ADDRESS
//	reuse restart [-handovers N] [-listeners K,...] [-workers N] [-mptcp=false] [-udp=false] [-naive=false]
//	reuse help
//
// demo starts N worker processes that listen on one loopback port with
// reuse.Listen, opens M connections to it (default 4 and 1000), and prints
// how many each process accepted: on Linux, the kernel's spread.
//
// probe (Linux and Windows) binds real sockets, on Linux inside a private
// network namespace of its own so that it may bind wildcard addresses, and
// prints for TCP and
// UDP, IPv4 and IPv6, whether a second socket can bind a port a first one
// holds, with every combination of options; then whether the kernel
// balances, whether a specific address beats a wildcard, whether another
// user is refused (as root), tcp_migrate_req, MPTCP, and the versions.
// -json prints the report for programs, -markdown the part that depends on
// the kernel alone, as in the repository's PROBE.md.
//
// restart serves a loopback port under continuous load from worker
// processes of each shape (one listener, a group of listeners in one
// process, N worker processes with a slot each; TCP and UDP) and replaces
// them N times (default 20) with reuse.Handover, and naively (the old
// sockets close as soon as the new ones are bound), then counts the
// connections served, refused and reset, and the datagrams lost, and sums
// up what each way lost per shape.
//
// who (Linux) lists every socket on ADDRESS's port (host:port, :port or a
// port), TCP (MPTCP listeners too) and UDP, IPv4 and IPv6: state, owner, process, accept
// or receive queue, drops, the reuseport groups it can infer, and the
// processes of a Handover on the port. Elsewhere it says it cannot look.
//
// Each subcommand prints its flags with -h. A wrong flag or argument exits
// with status 2, a failure with 1. Steps that take more than a second
// report their progress on standard error.
//
// Built with Go 1.24 or later, the command behaves as a program of a module
// whose go line is 1.24 or later: its listeners are MPTCP sockets where the
// kernel allows it (GODEBUG multipathtcp=2), so that it meets what users'
// servers meet. The probe says which setting it ran with.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
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
	"who":     {"list the sockets on a port, their owners, groups and queues, and its handovers (Linux; -json)", runWho},
	"restart": {"restart servers (one listener, a group, N workers; TCP and UDP) under load with reuse.Handover and naively; count losses", runRestart},
}

func main() {
	if name := os.Getenv(envWorker); name != "" {
		os.Exit(runWorker(name, os.Args[1:]))
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run runs the command with args (without the program's name) and returns
// its exit status: 0, 1 when the subcommand failed, 2 for a wrong command line.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	if args[0] == "help" || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" {
		if len(args) > 1 {
			if _, ok := subcommands[args[1]]; ok {
				return run([]string{args[1], "-h"}, stdout, stderr)
			}
		}
		usage(stdout)
		return 0
	}
	sc, ok := subcommands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "reuse: unknown subcommand %q\n", args[0])
		usage(stderr)
		return 2
	}
	err := sc.run(args[1:], stdout)
	var ue *usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue) && errors.Is(ue.err, flag.ErrHelp):
		fmt.Fprint(stdout, subcommandUsage(args[0], ue.flags))
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "reuse %s: %v\n%s", args[0], ue.err, subcommandUsage(args[0], ue.flags))
		return 2
	}
	fmt.Fprintf(stderr, "reuse %s: %v\n", args[0], err)
	return 1
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
	fmt.Fprintln(w, `Run "reuse <subcommand> -h" for its flags.`)
}

// usageError is a wrong command line: main prints it with the
// subcommand's usage and exits with status 2 (0 for -h).
type usageError struct {
	err   error
	flags *flag.FlagSet
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// parseArgs parses a subcommand's flags and refuses arguments after them.
// Its errors are *usageError values, flag.ErrHelp for -h.
func parseArgs(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard) // run prints the usage, on stdout for -h
	err := fs.Parse(args)
	if err == nil && fs.NArg() > 0 {
		err = fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err != nil {
		return &usageError{err: err, flags: fs}
	}
	return nil
}

// badFlag returns a *usageError for a flag value that parsed but is out of range.
func badFlag(fs *flag.FlagSet, format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...), flags: fs}
}

// subcommandUsage returns a subcommand's usage: its synopsis and flags.
func subcommandUsage(name string, fs *flag.FlagSet) string {
	var b strings.Builder
	fmt.Fprintf(&b, "usage: reuse %s [flags]\n%s\n", name, subcommands[name].summary)
	var flags strings.Builder
	fs.SetOutput(&flags)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
	if flags.Len() > 0 {
		b.WriteString("flags:\n" + flags.String())
	}
	return b.String()
}

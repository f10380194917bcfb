package main

import (
	"fmt"
	"os"
	"os/exec"
)

// envWorker names the worker that a re-run of this command is to be.
const envWorker = "REUSE_CMD_WORKER"

// workers maps a worker name to its body; it reads commands on stdin and
// ends when stdin closes, so that no worker outlives the command.
var workers = map[string]func(args []string) error{
	"demo":        demoWorker,
	"probe-bind":  probeBindWorker,  // the probe's other user
	"probe-netns": probeNetNSWorker, // the probe in a private network namespace
	"restart":     restartWorker,
}

func runWorker(name string, args []string) int {
	w, ok := workers[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "reuse: no worker %q\n", name)
		return 2
	}
	if err := w(args); err != nil {
		fmt.Fprintf(os.Stderr, "reuse worker %s (pid %d): %v\n", name, os.Getpid(), err)
		return 1
	}
	return 0
}

// workerCommand returns a command that runs this program again as worker name.
func workerCommand(name string, args ...string) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), envWorker+"="+name)
	cmd.Stderr = os.Stderr
	return cmd, nil
}

package sockettest_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sockreuse/reuse/internal/sockettest"
)

func init() {
	sockettest.Register("whoami", func(args []string) error {
		fmt.Printf("uid %d pid %d %s\n", os.Getuid(), os.Getpid(), strings.Join(args, " "))
		return nil
	})
	sockettest.Register("chatter", func([]string) error {
		for {
			fmt.Println("a line nobody reads")
		}
	})
}

func TestMain(m *testing.M) { sockettest.Main(m) }

func TestWorker(t *testing.T) {
	w := sockettest.StartWorker(t, "whoami", []string{"a", "b"})
	got := w.Expect("uid ", 10*time.Second)
	want := fmt.Sprintf("%d pid %d a b", os.Getuid(), w.Pid())
	if got != want {
		t.Errorf("worker printed %q, want %q", got, want)
	}
	if err := w.Wait(); err != nil {
		t.Error(err)
	}
}

func TestWorkerAsUser(t *testing.T) {
	sockettest.RequireRoot(t, "run a worker as uid 65534")
	w := sockettest.StartWorker(t, "whoami", nil, sockettest.AsUser(65534, 65534))
	if got := w.Expect("uid ", 10*time.Second); !strings.HasPrefix(got, "65534 ") {
		t.Errorf("worker runs as uid %q, want 65534", got)
	}
	if err := w.Wait(); err != nil {
		t.Error(err)
	}
}

func TestRunInNetNS(t *testing.T) {
	if !sockettest.RunInNetNS(t) {
		return
	}
	// A private namespace has only lo: no interface of the host is here.
	data, err := os.ReadFile("/proc/net/dev")
	if err != nil {
		t.Fatal(err)
	}
	var ifaces []string
	for _, line := range strings.Split(string(data), "\n")[2:] {
		if name, _, ok := strings.Cut(line, ":"); ok {
			ifaces = append(ifaces, strings.TrimSpace(name))
		}
	}
	if len(ifaces) != 1 || ifaces[0] != "lo" {
		t.Errorf("interfaces in the namespace: %v, want [lo]", ifaces)
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/tcp_migrate_req", []byte("1"), 0); err != nil {
		t.Errorf("the namespace's sysctl is not writable: %v", err)
	}
}

// heldCleanups is t, but keeps the functions given to Cleanup for the test
// to run.
type heldCleanups struct {
	testing.TB
	fns []func()
}

func (h *heldCleanups) Cleanup(f func()) { h.fns = append(h.fns, f) }

// TestWorkerCleanupUnread: a worker whose output nobody reads (its lines
// fill the pipe) is killed and waited for when its test ends, within the
// bound of a worker's exit, not for ever.
func TestWorkerCleanupUnread(t *testing.T) {
	tb := &heldCleanups{TB: t}
	w := sockettest.StartWorker(tb, "chatter", nil)
	w.Expect("a line", 10*time.Second)
	time.Sleep(100 * time.Millisecond) // its output fills the pipe
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, f := range tb.fns {
			f()
		}
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatalf("the cleanup of worker %d, whose output nobody read, still waits after a minute", w.Pid())
	}
	if !w.Exited() {
		t.Errorf("worker %d runs on after its cleanup", w.Pid())
	}
}

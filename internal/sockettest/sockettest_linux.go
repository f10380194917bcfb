package sockettest

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/sockreuse/reuse/internal/netns"
)

// netNSAttr makes a child a user and network namespace of its own, in which
// it is root, and kills it when the parent dies.
// netNSAttr is netns.Attr, plus, when run as root, uid and gid 65534 mapped
// as themselves, so that AsUser works inside the namespace too.
func netNSAttr() *syscall.SysProcAttr {
	attr := netns.Attr()
	if os.Getuid() == 0 {
		attr.UidMappings = append(attr.UidMappings, syscall.SysProcIDMap{ContainerID: 65534, HostID: 65534, Size: 1})
		attr.GidMappings = append(attr.GidMappings, syscall.SysProcIDMap{ContainerID: 65534, HostID: 65534, Size: 1})
		attr.GidMappingsEnableSetgroups = true
	}
	return attr
}

// isRefusal reports whether starting a namespaced child failed because the
// kernel, a sandbox or an emulator (qemu-user) does not allow namespaces.
func isRefusal(err error) bool { return netns.IsRefusal(err) }

// setUpNetNS brings up the loopback interface of a new network namespace.
func setUpNetNS() error { return netns.SetUpLoopback() }

// OpenFDs returns how many file descriptors this process has open.
func OpenFDs(t testing.TB) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("counting open descriptors: %v", err)
	}
	return len(entries) - 1 // the directory being read
}

// AsUser runs the worker as uid and gid; the test must run as root.
func AsUser(uid, gid uint32) WorkerOption {
	return func(cmd *exec.Cmd) error {
		path, err := sharedCopy()
		if err != nil {
			return err
		}
		cmd.Path = path
		cmd.Args[0] = path
		cmd.Dir = os.TempDir()
		if cmd.SysProcAttr == nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{}
		}
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uid, Gid: gid}
		return nil
	}
}

var (
	sharedOnce sync.Once
	sharedDir  string
	sharedPath string
	sharedErr  error
)

// sharedCopy copies the test binary to a directory every user may read,
// since go test builds it in one only its owner may.
func sharedCopy() (string, error) {
	sharedOnce.Do(func() {
		sharedDir, sharedErr = os.MkdirTemp("", "sockettest")
		if sharedErr != nil {
			return
		}
		if sharedErr = os.Chmod(sharedDir, 0o755); sharedErr != nil {
			return
		}
		var data []byte
		if data, sharedErr = os.ReadFile(os.Args[0]); sharedErr != nil {
			return
		}
		sharedPath = sharedDir + "/test.bin"
		sharedErr = os.WriteFile(sharedPath, data, 0o755)
	})
	return sharedPath, sharedErr
}

func removeSharedCopy() {
	if sharedDir != "" {
		_ = os.RemoveAll(sharedDir)
	}
}

// UDPDrops returns how many datagrams the kernel dropped on the UDP socket
// fd (a full buffer, a socket filter): the last column of its line of
// /proc/net/udp{,6}, which qemu-user passes through where it answers no
// sock_diag. A listing resumes by position from one read to the next, so
// that a socket closed meanwhile may shift this one past a cut: it reads
// again, 20 times at most.
func UDPDrops(fd uintptr) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(fd), &st); err != nil {
		return 0, os.NewSyscallError("fstat", err)
	}
	ino := strconv.FormatUint(st.Ino, 10)
	for try := 0; try < 20; try++ {
		for _, file := range []string{"/proc/net/udp", "/proc/net/udp6"} {
			data, err := os.ReadFile(file)
			if err != nil {
				return 0, err
			}
			for _, line := range strings.Split(string(data), "\n") {
				if f := strings.Fields(line); len(f) >= 13 && f[9] == ino {
					return strconv.ParseUint(f[len(f)-1], 10, 64)
				}
			}
		}
	}
	return 0, fmt.Errorf("socket inode %s is in neither /proc/net/udp nor /proc/net/udp6, in 20 reads", ino)
}

package sockettest

import (
	"net"
	"os"
	"os/exec"
	"testing"
)

// envEmulator names the user-mode emulator (qemu-aarch64, qemu-s390x, …) that
// runs the test binary. The exec wrappers in .ci/bin set it, so that workers,
// which are the test binary run again, run under the same emulator.
const envEmulator = "SOCKETTEST_EMULATOR"

// Emulator returns the user-mode emulator that runs this test binary, as
// named in SOCKETTEST_EMULATOR, or "" when it runs natively.
func Emulator() string { return os.Getenv(envEmulator) }

// underEmulator makes cmd, which runs a binary of this architecture, run it
// under the emulator instead: the host kernel cannot execute it itself.
func underEmulator(cmd *exec.Cmd, emulator string) error {
	path, err := exec.LookPath(emulator)
	if err != nil {
		return err
	}
	cmd.Args = append([]string{path}, cmd.Args...)
	cmd.Path = path
	return nil
}

// RequireUDP skips the test when this system cannot open a plain UDP socket
// for a reason outside the package: Wine 8.0 lacks the SIO_UDP_CONNRESET
// ioctl that Go's net calls on every Windows UDP socket, so net.ListenPacket
// fails there with WSAEOPNOTSUPP (winapi error #10045). Any other failure of
// a plain UDP socket fails the test.
func RequireUDP(t testing.TB) {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err == nil {
		c.Close()
		return
	}
	if IsWine() && isUDPIoctlMissing(err) {
		t.Skipf("Wine cannot open UDP sockets for Go (the SIO_UDP_CONNRESET ioctl is missing): %v", err)
	}
	t.Fatalf("a plain UDP socket on loopback fails: %v", err)
}

// envPrivateNet says that the whole test runs in a network namespace of its
// own, where binding the wildcard address reaches no other host: .ci/wine.sh
// sets it when it runs Wine in one.
const envPrivateNet = "SOCKETTEST_PRIVATE_NET"

// PrivateNetwork reports whether this process's network is private to the
// test, so that it may bind the wildcard address: inside RunInNetNS, or
// where SOCKETTEST_PRIVATE_NET says so.
func PrivateNetwork() bool { return InNetNS() || os.Getenv(envPrivateNet) != "" }

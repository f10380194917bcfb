package netns

import (
	"errors"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Attr returns the attributes that start a child in a user and network
// namespace of its own, in which it is root, and kill it when the parent
// dies.
func Attr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
		Pdeathsig:   syscall.SIGKILL,
	}
}

// IsRefusal reports whether starting a child with Attr failed because the
// kernel, a sandbox or an emulator (qemu-user) does not allow namespaces.
func IsRefusal(err error) bool {
	for _, e := range []error{unix.EPERM, unix.EINVAL, unix.ENOSYS, unix.EACCES, unix.EUSERS, unix.ENOSPC} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// SetUpLoopback brings up the loopback interface of a new network namespace.
func SetUpLoopback() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return os.NewSyscallError("ioctl SIOCGIFFLAGS", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return os.NewSyscallError("ioctl SIOCSIFFLAGS", err)
	}
	return nil
}

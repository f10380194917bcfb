// Package netns makes a process a private user and network namespace of its
// own, where the loopback interface is up, every 127.0.0.0/8 address is
// local, and the namespace's sysctls are writable: a place to bind wildcard
// addresses without touching the machine's network. It is shared by the
// tests' helpers and the reuse command.
package netns

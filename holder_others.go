//go:build !linux

package reuse

import "net"

// explainInUse returns err: this OS gives no list of the sockets on a port
// that the package reads.
func explainInUse(_ *net.OpError, err error, _ []sockOpt) error { return err }

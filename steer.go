package reuse

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"syscall"
)

// Steering says how the kernel picks the member of a UDP group (see
// ListenPacketGroup) that receives each datagram: by a byte of the
// datagram's own payload, instead of by a hash of its addresses, so that a
// flow whose client address or port changes stays on the member that knows
// it. Attach it with Steer.
//
// A member is named by its index in the group: the order in which the
// members joined, from 0, whichever processes hold them (ListenPacketGroup
// opens them in the order of its result). When a member closes, the kernel
// moves the last member into its index: the datagrams named for the closed
// one then reach that last member, and those named for the last index go by
// the hash, so the moved member's flows are lost. Close members from the
// last one joined: each close then sends only the closed member's own
// datagrams to the hash. A member that joins takes the next index; the
// others keep theirs.
type Steering struct {
	// Offset is the position in the UDP payload, from 0, of the byte that
	// names the member: a datagram whose byte there is k goes to member k.
	// A datagram too short to have that byte, or whose byte names no member
	// (k at or past the size of the group), goes by the hash.
	Offset int

	// HashIf lists bits of the payload's first byte: a datagram with any of
	// them set goes by the hash, whatever its byte at Offset.
	HashIf byte
}

// QUICSteering returns the Steering of a QUIC server whose members issue
// connection IDs made by QUICConnectionIDs: a short-header packet (first
// bit 0), sent once the handshake is done, goes to the member named by the
// first byte of its destination connection ID (payload offset 1), whatever
// the client's address and port, so that a connection survives the client's
// migration or NAT rebinding. A long-header packet (first bit 1: Initial,
// 0-RTT, Handshake) belongs to a handshake, which does not migrate, and the
// client's first ones carry an ID that the client chose: it goes by the
// hash, which keeps one handshake, from one address, on one member.
func QUICSteering() Steering { return Steering{Offset: 1, HashIf: 0x80} }

// maxUDPPayload is the largest UDP payload there is (IPv6 without jumbograms):
// a byte at or past it is never in a datagram.
const maxUDPPayload = 65535 - 8

// check returns an error naming what is wrong with s.
func (s Steering) check() error {
	if s.Offset < 0 || s.Offset >= maxUDPPayload {
		return fmt.Errorf("%ssteering offset %d: want 0 to %d, a position in a UDP payload", errPrefix, s.Offset, maxUDPPayload-1)
	}
	return nil
}

// Steer makes the kernel pick the member of pc's UDP group that receives
// each datagram by s. The steering belongs to the group: pc may be any of
// its members, in this process or another, and members that join later are
// steered too. It replaces the group's earlier steering, if any; Unsteer
// removes it, and it ends when the last member closes.
//
// On Linux (4.5+, from the kernel's sources) it attaches a classic BPF
// program to the group (SO_ATTACH_REUSEPORT_CBPF), which needs no
// privilege. pc must be a UDP
// socket opened under Share. Elsewhere it returns an error wrapping
// [errors.ErrUnsupported] without touching pc. Errors are *[net.OpError] values
// with Op "steer".
func Steer(pc net.PacketConn, s Steering) error {
	if err := s.check(); err != nil {
		return steerError("steer", pc, err)
	}
	rc, err := groupConn(pc)
	if err == nil {
		err = steer(rc, s)
	}
	return steerError("steer", pc, err)
}

// Unsteer lets the kernel pick the member of pc's UDP group by the hash
// again, as before Steer; pc may be any member of the group. A group that
// was not steered is left as it is. It needs Linux 5.3+
// (SO_DETACH_REUSEPORT_BPF, from the kernel's sources; an older kernel's
// refusal wraps [errors.ErrUnsupported]); elsewhere it returns an error wrapping
// [errors.ErrUnsupported]. Errors are *[net.OpError] values with Op "unsteer".
func Unsteer(pc net.PacketConn) error {
	rc, err := groupConn(pc)
	if err == nil {
		err = unsteer(rc)
	}
	return steerError("unsteer", pc, err)
}

// checkSteering returns the error of a listen call for a socket of kind k
// by c, whose Steering is set, before any socket is opened.
func (c *Config) checkSteering(k sockKind) error {
	switch {
	case k != datagram:
		return errors.New(errPrefix + "Steering applies to UDP sockets (ListenPacket, ListenPacketGroup)")
	case c.Mode != Share:
		return fmt.Errorf("%sSteering needs Share, not %v: it steers a group", errPrefix, c.Mode)
	}
	if err := c.Steering.check(); err != nil {
		return err
	}
	return canSteer()
}

// steerNew steers the group of conn, a socket that a Config with Steering
// has just opened.
func steerNew(conn any, s Steering) error {
	pc, _ := conn.(net.PacketConn)
	rc, err := groupConn(pc)
	if err != nil {
		return err
	}
	return steer(rc, s)
}

// groupConn returns the RawConn of pc, or an error before any system call
// where this OS cannot steer or pc cannot be reached.
func groupConn(pc net.PacketConn) (syscall.RawConn, error) {
	if err := canSteer(); err != nil {
		return nil, err
	}
	sc, ok := pc.(syscall.Conn)
	if !ok || isNil(pc) {
		return nil, fmt.Errorf("%ssteering needs a UDP socket of a group (a *net.UDPConn), not %T", errPrefix, pc)
	}
	return sc.SyscallConn()
}

// isNil reports whether pc holds a nil *net.UDPConn, whose SyscallConn
// would fail with an error that does not say why.
func isNil(pc net.PacketConn) bool {
	u, ok := pc.(*net.UDPConn)
	return pc == nil || (ok && u == nil)
}

// steerError wraps err, if any, in a *[net.OpError] naming op and pc's address.
func steerError(op string, pc net.PacketConn, err error) error {
	if err == nil {
		return nil
	}
	var addr net.Addr
	if !isNil(pc) {
		addr = pc.LocalAddr()
	}
	return &net.OpError{Op: op, Net: "udp", Addr: addr, Err: err}
}

// QUICConnectionIDs makes the connection IDs that one member of a QUIC
// server's UDP group issues, for QUICSteering. Each ID is Len bytes: the
// member's index, the generation, then Len-2 bytes from crypto/rand, so
// that an observer can link two IDs by nothing but the member and the
// generation, which every connection of the same member shares: the
// default 8 bytes carry 48 random bits, 20 bytes 144.
//
// It is made to back quic-go's ConnectionIDGenerator (set in its Transport)
// without this package depending on quic-go:
//
//	type connIDs struct{ reuse.QUICConnectionIDs }
//
//	func (g connIDs) GenerateConnectionID() (quic.ConnectionID, error) {
//		id, err := g.Generate()
//		return quic.ConnectionIDFromBytes(id), err
//	}
type QUICConnectionIDs struct {
	// Member is the index in the group (0 to 255) of the socket that
	// serves the connections these IDs belong to: the Transport's Conn.
	Member int

	// Generation (0 to 255) tells apart the IDs issued by successive
	// generations of a server's members, as across a restart; the steering
	// of QUICSteering reads only the member.
	Generation int

	// Len is the length of each ID in bytes, from 8 to 20; 0 means 8.
	Len int
}

// Default and limits of QUICConnectionIDs.Len; QUIC allows at most 20 bytes.
const (
	defaultQUICIDLen = 8
	minQUICIDLen     = 8
	maxQUICIDLen     = 20
)

// ConnectionIDLen returns the length of the IDs that Generate makes.
func (g QUICConnectionIDs) ConnectionIDLen() int {
	if g.Len == 0 {
		return defaultQUICIDLen
	}
	return g.Len
}

// Generate returns a new connection ID, or an error naming the field of g
// that is out of range.
func (g QUICConnectionIDs) Generate() ([]byte, error) {
	switch n := g.ConnectionIDLen(); {
	case g.Member < 0 || g.Member > 255:
		return nil, fmt.Errorf("%sQUIC connection ID for member %d: want 0 to 255", errPrefix, g.Member)
	case g.Generation < 0 || g.Generation > 255:
		return nil, fmt.Errorf("%sQUIC connection ID of generation %d: want 0 to 255", errPrefix, g.Generation)
	case n < minQUICIDLen || n > maxQUICIDLen:
		return nil, fmt.Errorf("%sQUIC connection ID of %d bytes: want %d to %d", errPrefix, n, minQUICIDLen, maxQUICIDLen)
	}
	id := make([]byte, g.ConnectionIDLen())
	id[0], id[1] = byte(g.Member), byte(g.Generation)
	if _, err := rand.Read(id[2:]); err != nil {
		return nil, fmt.Errorf("%sQUIC connection ID: %w", errPrefix, err)
	}
	return id, nil
}

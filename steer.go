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
	//
	// Offset must be a byte that a datagram can reach: 0 to 65506 on an
	// IPv4 socket, 0 to 65526 on an IPv6 one. The UDP header's 16-bit
	// length, which counts its own 8 bytes, caps a payload at 65,527
	// bytes; IPv4's total length, which counts its 20-byte header too, at
	// 65,507. (IPv6 jumbograms, RFC 2675, are left out.) A dual-stack IPv6
	// socket takes the IPv6 range: its IPv4 datagrams too short to reach
	// Offset go by the hash. Steer, ListenPacket and ListenPacketGroup
	// refuse an Offset out of range.
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
//
// In examples/quic, 100 of 100 quic-go connections survive migrating to a
// new client port on a steered group of 4, about a quarter on a hashed one;
// the program's cost is in the README's QUIC section (bench/steer.sh). A
// steered QUIC server restarts without breaking a connection with a
// Handover whose Steering is set.
func QUICSteering() Steering { return Steering{Offset: 1, HashIf: 0x80} }

// The largest UDP payloads (see Steering.Offset).
const (
	maxUDPPayloadIPv4 = 65535 - 20 - 8
	maxUDPPayloadIPv6 = 65535 - 8
)

// checkFor returns an error naming what is wrong with s on a socket of
// IPv4 (ipv6 false) or IPv6.
func (s Steering) checkFor(ipv6 bool) error {
	family, max := "IPv4", maxUDPPayloadIPv4
	if ipv6 {
		family, max = "IPv6", maxUDPPayloadIPv6
	}
	if s.Offset < 0 || s.Offset >= max {
		return fmt.Errorf("steering offset %d: want 0 to %d, the bytes that a UDP payload over %s (at most %d bytes) can reach", s.Offset, max-1, family, max)
	}
	return nil
}

// Steer makes the kernel pick the member of pc's UDP group that receives
// each datagram by s. The steering belongs to the group: pc may be any of
// its members, in this process or another, and members that join later are
// steered too. It replaces the group's earlier steering, if any; Unsteer
// removes it, and it ends when the last member closes. A Steer that fails
// leaves the group's earlier steering, if any, as it was: the kernel swaps
// the program only when the new one is attached.
//
// On Linux (4.5+, from the kernel's sources) it attaches a classic BPF
// program to the group (SO_ATTACH_REUSEPORT_CBPF), which needs no
// privilege. pc must be a UDP socket opened under Share, and s.Offset
// within the range of its family (see Steering). Elsewhere it returns an
// error wrapping [errors.ErrUnsupported] without touching pc. Errors are
// *[net.OpError] values with Op "steer".
func Steer(pc net.PacketConn, s Steering) error {
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

// checkSteering returns the error of a listen call on network for a socket
// of kind k by c, whose Steering is set, before any socket is opened. The
// offset is checked for the family of network where it says one (udp4),
// else for IPv6, and again by Steer once the socket's family is known.
func (c *Config) checkSteering(network string, k sockKind) error {
	switch {
	case k != datagram:
		return errors.New("Steering applies to UDP sockets (ListenPacket, ListenPacketGroup)")
	case c.Mode != Share:
		return fmt.Errorf("Steering needs Share, not %v: it steers a group", c.Mode)
	}
	if err := c.Steering.checkFor(network != "udp4"); err != nil {
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
	if isNil(pc) {
		return nil, fmt.Errorf("%s: want a UDP socket of a group", nilName(pc))
	}
	sc, ok := pc.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("a %T, which has no SyscallConn: want a UDP socket of a group (a *net.UDPConn)", pc)
	}
	return sc.SyscallConn()
}

// isNil reports whether pc is nil or holds a nil *net.UDPConn, whose
// SyscallConn would fail with an error that does not say why.
func isNil(pc net.PacketConn) bool {
	u, ok := pc.(*net.UDPConn)
	return pc == nil || (ok && u == nil)
}

// nilName names a nil pc as the caller wrote it.
func nilName(pc net.PacketConn) string {
	if pc == nil {
		return "a nil net.PacketConn"
	}
	return fmt.Sprintf("a nil %T", pc)
}

// steerError returns err, if any, as the *[net.OpError] of op on pc, which
// names pc's network and address as pc gives them (none for a nil pc).
func steerError(op string, pc net.PacketConn, err error) error {
	if err == nil {
		return nil
	}
	var network, address string
	if !isNil(pc) {
		if a := pc.LocalAddr(); a != nil {
			network, address = a.Network(), a.String()
		}
	}
	return edgeError(op, network, address, err)
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

// ConnectionIDLen returns the length of the IDs that Generate makes: Len,
// or 8 where Len is 0. For a Len out of range, Generate makes none, and
// returns an error naming Len; ConnectionIDLen returns 0 then, not a length
// that a QUIC stack could take for that of an ID.
func (g QUICConnectionIDs) ConnectionIDLen() int {
	n, err := g.idLen()
	if err != nil {
		return 0
	}
	return n
}

// idLen returns the length of g's IDs, or an error naming Len.
func (g QUICConnectionIDs) idLen() (int, error) {
	switch {
	case g.Len == 0:
		return defaultQUICIDLen, nil
	case g.Len < minQUICIDLen || g.Len > maxQUICIDLen:
		return 0, fmt.Errorf("QUIC connection ID of %d bytes: want %d to %d", g.Len, minQUICIDLen, maxQUICIDLen)
	}
	return g.Len, nil
}

// Generate returns a new connection ID, or an error naming the field of g
// that is out of range.
func (g QUICConnectionIDs) Generate() ([]byte, error) {
	id, err := g.generate()
	return id, wrapError(err)
}

func (g QUICConnectionIDs) generate() ([]byte, error) {
	n, err := g.idLen()
	switch {
	case g.Member < 0 || g.Member > 255:
		return nil, fmt.Errorf("QUIC connection ID for member %d: want 0 to 255", g.Member)
	case g.Generation < 0 || g.Generation > 255:
		return nil, fmt.Errorf("QUIC connection ID of generation %d: want 0 to 255", g.Generation)
	case err != nil:
		return nil, err
	}
	id := make([]byte, n)
	id[0], id[1] = byte(g.Member), byte(g.Generation)
	if _, err := rand.Read(id[2:]); err != nil {
		return nil, fmt.Errorf("QUIC connection ID: %w", err)
	}
	return id, nil
}

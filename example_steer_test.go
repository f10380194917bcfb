package reuse_test

import (
	"fmt"
	"log"
	"net"
	"time"

	"github.com/sockreuse/reuse"
)

// answer serves pc, a member of a group, answering each datagram with the
// member's name.
func answer(pc net.PacketConn, name string) {
	buf := make([]byte, 1500)
	for {
		_, from, err := pc.ReadFrom(buf)
		if err != nil {
			return // closed
		}
		pc.WriteTo([]byte(name), from)
	}
}

// ask sends payload to addr from a new socket (a new source port) and
// returns the answer.
func ask(addr string, payload []byte) string {
	c, err := net.Dial("udp", addr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(payload); err != nil {
		log.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		log.Fatal(err)
	}
	return string(buf[:n])
}

// A protocol whose datagrams name their member in their first byte: each
// reaches that member, whatever port it comes from.
func ExampleSteer() {
	conns, err := reuse.ListenPacketGroup("udp", "127.0.0.1:0", 3)
	if err != nil {
		log.Fatal(err)
	}
	for i, pc := range conns {
		defer pc.Close()
		go answer(pc, fmt.Sprint("member ", i))
	}
	if err := reuse.Steer(conns[0], reuse.Steering{Offset: 0}); err != nil {
		log.Fatal(err) // not Linux: wraps errors.ErrUnsupported
	}
	addr := conns[0].LocalAddr().String()
	for _, tag := range []byte{2, 0, 1, 2} {
		fmt.Println(ask(addr, []byte{tag, 'h', 'i'}))
	}
	// Output:
	// member 2
	// member 0
	// member 1
	// member 2
}

// HashIf leaves some datagrams to the hash: here those whose first byte has
// its top bit set, such as a handshake that must stay with its source.
func ExampleSteering() {
	conns, err := reuse.ListenPacketGroup("udp", "127.0.0.1:0", 2)
	if err != nil {
		log.Fatal(err)
	}
	for i, pc := range conns {
		defer pc.Close()
		go answer(pc, fmt.Sprint("member ", i))
	}
	s := reuse.Steering{Offset: 1, HashIf: 0x80}
	if err := reuse.Steer(conns[0], s); err != nil {
		log.Fatal(err)
	}
	addr := conns[0].LocalAddr().String()
	fmt.Println("tagged:", ask(addr, []byte{0x01, 1}))
	hello := ask(addr, []byte{0x81, 1}) // by the hash: either member
	fmt.Println("hello answered:", hello == "member 0" || hello == "member 1")
	// Output:
	// tagged: member 1
	// hello answered: true
}

// A QUIC packet with a short header reaches the member named in its
// destination connection ID, whatever the client's address and port.
func ExampleQUICSteering() {
	conns, err := reuse.ListenPacketGroup("udp", "127.0.0.1:0", 4)
	if err != nil {
		log.Fatal(err)
	}
	for i, pc := range conns {
		defer pc.Close()
		go answer(pc, fmt.Sprint("member ", i))
	}
	if err := reuse.Steer(conns[0], reuse.QUICSteering()); err != nil {
		log.Fatal(err)
	}
	id, err := reuse.QUICConnectionIDs{Member: 3}.Generate() // issued by member 3
	if err != nil {
		log.Fatal(err)
	}
	packet := append([]byte{0x40}, id...) // short header, then the ID
	packet = append(packet, "protected payload"...)
	fmt.Println(ask(conns[0].LocalAddr().String(), packet))
	// Output: member 3
}

// Unsteer gives the group back to the hash, through any of its members.
func ExampleUnsteer() {
	conns, err := reuse.ListenPacketGroup("udp", "127.0.0.1:0", 2)
	if err != nil {
		log.Fatal(err)
	}
	defer conns[0].Close()
	defer conns[1].Close()
	if err := reuse.Steer(conns[0], reuse.QUICSteering()); err != nil {
		log.Fatal(err)
	}
	fmt.Println(reuse.Unsteer(conns[1]))
	// Output: <nil>
}

// The connection IDs of member 2 of a QUIC server: the member and the
// generation in the first two bytes, random bytes after them.
func ExampleQUICConnectionIDs() {
	ids := reuse.QUICConnectionIDs{Member: 2, Generation: 1}
	a, err := ids.Generate()
	if err != nil {
		log.Fatal(err)
	}
	b, err := ids.Generate()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ids.ConnectionIDLen(), len(a), a[:2], b[:2], string(a[2:]) != string(b[2:]))
	// Output: 8 8 [2 1] [2 1] true
}

// An out-of-range member is an error, not an ID that names no member.
func ExampleQUICConnectionIDs_Generate() {
	_, err := reuse.QUICConnectionIDs{Member: 300}.Generate()
	fmt.Println(err)
	// Output: reuse: QUIC connection ID for member 300: want 0 to 255
}

// Twenty bytes carry 144 random bits.
func ExampleQUICConnectionIDs_ConnectionIDLen() {
	fmt.Println(reuse.QUICConnectionIDs{Len: 20}.ConnectionIDLen())
	// Output: 20
}

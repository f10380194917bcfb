// Command quic shows a QUIC server of 4 quic-go transports on one UDP port
// that keeps its connections when clients migrate, with reuse.QUICSteering.
//
// It runs the same load twice, in one run, on two servers of 4 members on
// 127.0.0.1: one steered by the connection IDs, one spread by the kernel's
// hash alone. Each of -clients clients opens a connection, echoes a message
// on a stream, then migrates to a new local port with quic-go's path API
// (Conn.AddPath, Path.Probe, Path.Switch) and echoes again. It prints how
// many connections survived on each server and exits with status 1 unless
// every steered connection survived and most of the hashed ones broke:
// after the move the hash sends a client's packets to the member that
// holds its connection with probability 1/4 only, so for 100 clients the
// survivors of the hashed server are Binomial(100, 1/4), and 50 or more of
// them has a probability below 1e-8.
//
// Then it restarts a steered server (restart.go): a new generation of 4
// transports takes the port over with a reuse.Handover whose Steering is
// QUICSteering, while -clients connections live on the old one; the old
// connections echo and migrate during the handover, -clients new ones
// must all land on the new generation, the old generation closes once its
// connections ended, and the new connections echo and migrate again. Both
// generations run in this one process (to the kernel, the same as two).
// It exits with status 1 unless every connection was kept.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/sockreuse/reuse"
)

// connIDs makes quic-go issue the connection IDs of one member, which name
// it, so that QUICSteering finds it again.
type connIDs struct{ reuse.QUICConnectionIDs }

func (g connIDs) GenerateConnectionID() (quic.ConnectionID, error) {
	id, err := g.Generate()
	return quic.ConnectionIDFromBytes(id), err
}

const members = 4

func main() {
	clients := flag.Int("clients", 100, "connections per server")
	timeout := flag.Duration("timeout", 5*time.Second, "how long a handshake, a path probe or an echo may take")
	flag.Parse()
	log.SetFlags(0)

	steered, err := run(*clients, *timeout, true)
	if err != nil {
		log.Fatal(err)
	}
	hashed, err := run(*clients, *timeout, false)
	if err != nil {
		log.Fatal(err)
	}
	restarted, err := restart(*clients, *timeout)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("steered by connection ID: %d of %d connections survived migration\n", steered, *clients)
	fmt.Printf("spread by the hash:       %d of %d connections survived migration\n", hashed, *clients)
	fmt.Println(restarted)
	if steered != *clients || hashed*2 >= *clients {
		fmt.Println("FAIL: want every steered connection to survive, and most hashed ones to break")
		os.Exit(1)
	}
	if !restarted.ok() {
		fmt.Println("FAIL: want every connection kept through the restart, and every new one on the new generation")
		os.Exit(1)
	}
}

// serve opens a group of 4 UDP sockets on one port of 127.0.0.1, steered by
// connection ID if steer, and serves an echo on each stream of each
// connection, on one quic-go Transport per socket. It returns the port's
// address and a function that stops the server.
func serve(steer bool) (string, func(), error) {
	conns, err := reuse.ListenPacketGroup("udp4", "127.0.0.1:0", members)
	if err != nil {
		return "", nil, err
	}
	if steer {
		if err := reuse.Steer(conns[0], reuse.QUICSteering()); err != nil {
			for _, c := range conns {
				c.Close()
			}
			return "", nil, err
		}
	}
	tlsConf, err := selfSigned()
	if err != nil {
		return "", nil, err
	}
	var (
		wg         sync.WaitGroup
		transports []*quic.Transport
	)
	for i, c := range conns {
		tr := &quic.Transport{
			Conn:                  c.(*net.UDPConn), // the UDPConn itself: quic-go then uses its fast paths
			ConnectionIDGenerator: connIDs{reuse.QUICConnectionIDs{Member: i}},
		}
		transports = append(transports, tr)
		ln, err := tr.Listen(tlsConf, &quic.Config{})
		if err != nil {
			return "", nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				conn, err := ln.Accept(context.Background())
				if err != nil {
					return // closed
				}
				go echo(conn)
			}
		}()
	}
	stop := func() {
		for _, tr := range transports {
			tr.Close()
		}
		wg.Wait()
	}
	return conns[0].LocalAddr().String(), stop, nil
}

// echo sends back what each stream of conn carries.
func echo(conn *quic.Conn) {
	for {
		s, err := conn.AcceptStream(context.Background())
		if err != nil {
			return
		}
		go func() {
			io.Copy(s, s)
			s.Close()
		}()
	}
}

// run serves one group and returns how many of n clients kept their
// connection through a migration.
func run(n int, timeout time.Duration, steer bool) (int, error) {
	addr, stop, err := serve(steer)
	if err != nil {
		return 0, err
	}
	defer stop()
	raddr, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		return 0, err
	}
	var (
		survived atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		setupErr error
		// At most 16 handshakes at once: quic-go's accept queue holds 32.
		handshakes = make(chan struct{}, 16)
	)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := client(raddr, timeout, handshakes)
			var broken *brokenError
			switch {
			case err == nil:
				survived.Add(1)
			case errors.As(err, &broken):
			default:
				mu.Lock()
				if setupErr == nil {
					setupErr = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return int(survived.Load()), setupErr
}

// brokenError is a connection lost in its migration: the one outcome that a
// run counts instead of failing.
type brokenError struct{ err error }

func (e *brokenError) Error() string { return "migration broke the connection: " + e.err.Error() }

// client connects to raddr from a socket of its own, echoes a message on a
// stream, moves to a new socket (a new local port) and echoes again.
func client(raddr *net.UDPAddr, timeout time.Duration, handshakes chan struct{}) error {
	c, err := dial(raddr, timeout, handshakes)
	if err != nil {
		return err
	}
	defer c.close()
	return c.migrate(timeout)
}

// echoClient is a client's connection, its stream and its transports.
type echoClient struct {
	conn       *quic.Conn
	s          *quic.Stream
	transports []*quic.Transport
}

// dial connects to raddr from a socket of its own and echoes a message on
// a stream.
func dial(raddr *net.UDPAddr, timeout time.Duration, handshakes chan struct{}) (*echoClient, error) {
	first, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	c := &echoClient{transports: []*quic.Transport{{Conn: first}}}
	tlsConf := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"echo"}} // a self-signed server on loopback
	handshakes <- struct{}{}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	c.conn, err = c.transports[0].Dial(ctx, raddr, tlsConf, &quic.Config{})
	cancel()
	<-handshakes
	if err == nil {
		c.s, err = c.conn.OpenStream()
	}
	if err == nil {
		err = roundTrip(c.s, "before", timeout)
	}
	if err != nil {
		c.close()
		return nil, fmt.Errorf("handshake and first echo: %w", err)
	}
	return c, nil
}

// migrate moves c to a new socket (a new local port) with quic-go's path
// API and echoes a message. Its errors are brokenErrors.
func (c *echoClient) migrate(timeout time.Duration) error {
	next, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	tr := &quic.Transport{Conn: next}
	c.transports = append(c.transports, tr)
	path, err := c.conn.AddPath(tr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := path.Probe(ctx); err != nil {
		return &brokenError{fmt.Errorf("probing the new path: %w", err)}
	}
	if err := path.Switch(); err != nil {
		return &brokenError{fmt.Errorf("switching: %w", err)}
	}
	if err := roundTrip(c.s, "after", timeout); err != nil {
		return &brokenError{fmt.Errorf("after migrating: %w", err)}
	}
	return nil
}

// close closes c's connection and transports.
func (c *echoClient) close() {
	if c.conn != nil {
		c.conn.CloseWithError(0, "")
	}
	for _, tr := range c.transports {
		tr.Close()
		tr.Conn.Close()
	}
}

// roundTrip writes msg on s and reads it back.
func roundTrip(s *quic.Stream, msg string, timeout time.Duration) error {
	s.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(s, msg); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(s, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return fmt.Errorf("echo %q, want %q", buf, msg)
	}
	return nil
}

// selfSigned returns a server TLS config with a fresh self-signed
// certificate for 127.0.0.1.
func selfSigned() (*tls.Config, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		NextProtos:   []string{"echo"},
	}, nil
}

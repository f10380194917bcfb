package reuse

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"
)

// flowState is a FlowListener's demultiplexer: its flows, by remote address.
type flowState struct {
	network string // "udp4" or "udp6": the family of the flows' sockets
	port    int
	ifindex int // the group's SO_BINDTODEVICE, 0 if none
	done    chan struct{}

	mu       sync.Mutex
	flows    map[netip.AddrPort]*flowConn
	ready    []*flowConn // opened, waiting for Accept
	settling []*flowConn // opened, waiting for the group's queue to be read
	starved  []*flowConn // waiting for a file descriptor
	failed   []error     // flows that no socket could be opened for
	signal   chan struct{}
	closed   bool
	reads    uint64 // datagrams read from the group
}

// settleEvery is how many datagrams the listener reads from the group, at
// most, before it hands a flow opened meanwhile to Accept, when the group's
// queue never runs empty.
const settleEvery = 256

// maxStarved bounds the datagrams that a flow waiting for a file descriptor
// holds, and the number of such flows.
const maxStarved = 64

// accept is Accept; its errors are bare.
func (l *FlowListener) accept() (net.Conn, error) {
	for {
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return nil, net.ErrClosed
		}
		if len(l.failed) > 0 {
			err := l.failed[0]
			l.failed = l.failed[1:]
			l.mu.Unlock()
			return nil, err
		}
		if err := l.openStarved(); err != nil {
			l.mu.Unlock()
			return nil, err
		}
		if len(l.ready) > 0 {
			f := l.ready[0]
			l.ready = l.ready[1:]
			l.mu.Unlock()
			return f, nil
		}
		signal := l.signal
		l.mu.Unlock()
		<-signal
	}
}

// close is Close; its errors are bare.
func (l *FlowListener) close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return net.ErrClosed
	}
	l.closed = true
	var unaccepted []*flowConn
	unaccepted = append(unaccepted, l.ready...)
	unaccepted = append(unaccepted, l.settling...)
	l.ready, l.settling, l.starved, l.flows = nil, nil, nil, nil
	l.wake()
	l.mu.Unlock()
	for _, f := range unaccepted {
		f.conn.Close()
	}
	err := l.conn.Close()
	<-l.done
	return err
}

// wake wakes the Accepts waiting; l.mu is held.
func (l *FlowListener) wake() {
	close(l.signal)
	l.signal = make(chan struct{})
}

// flowDatagram is one datagram read from a socket, with where it was sent to.
type flowDatagram struct {
	data    []byte
	ts      int64          // the kernel's time of arrival (SO_TIMESTAMPNS), in ns; 0 if unknown
	from    netip.AddrPort // unmapped
	to      netip.Addr     // the local address it was sent to
	ifindex int            // the interface it arrived on
}

// dispatch gives d to its flow, or starts one; l.mu is held. It returns the
// datagrams of other flows found on a new flow's socket, to dispatch next.
func (l *FlowListener) dispatch(d flowDatagram) []flowDatagram {
	if l.closed {
		return nil
	}
	if f := l.flows[d.from]; f != nil {
		f.deliver(d)
		return nil
	}
	f := &flowConn{l: l, remote: d.from, local: d.to, ifindex: d.ifindex}
	f.pending = inOrder(f.pending, d)
	l.flows[d.from] = f
	others, err := l.open(f)
	switch {
	case err == nil:
		f.born = l.reads
		l.settling = append(l.settling, f)
	case isFDLimit(err) && len(l.starved) < maxStarved:
		l.starved = append(l.starved, f)
		l.failed = append(l.failed, err)
		l.wake()
	default:
		delete(l.flows, d.from)
		l.failed = append(l.failed, err)
		l.wake()
	}
	return others
}

// settle hands flows opened to Accept: all of them once the group's queue
// was read to its end since they were opened (all), else those opened
// settleEvery datagrams ago. Their sockets are read once more first: a
// datagram that the kernel looked up before the connect may have been
// queued on one after the drain at its opening; l.mu is held.
func (l *FlowListener) settle(all bool) {
	n := len(l.settling)
	if !all {
		n = 0
		for n < len(l.settling) && l.reads-l.settling[n].born >= settleEvery {
			n++
		}
	}
	if n == 0 {
		return
	}
	batch := l.settling[:n:n]
	l.settling = l.settling[n:]
	for _, f := range batch {
		others, _ := drain(f.conn, f)
		for len(others) > 0 {
			d := others[0]
			others = append(others[1:], l.dispatch(d)...)
		}
	}
	for _, f := range batch {
		f.mu.Lock()
		f.accepted = true
		f.mu.Unlock()
	}
	l.ready = append(l.ready, batch...)
	l.wake()
}

// openStarved opens the sockets of the flows that waited for a file
// descriptor, and returns the error of the first that still cannot; l.mu is
// held.
func (l *FlowListener) openStarved() error {
	for len(l.starved) > 0 {
		f := l.starved[0]
		others, err := l.open(f)
		if err != nil {
			return err
		}
		l.starved = l.starved[1:]
		f.mu.Lock()
		f.accepted = true
		f.mu.Unlock()
		l.ready = append(l.ready, f)
		for len(others) > 0 {
			d := others[0]
			others = append(others[1:], l.dispatch(d)...)
		}
	}
	return nil
}

// redirect dispatches a datagram of another flow that a flow's socket
// read (it reached the socket between its bind and its connect).
func (l *FlowListener) redirect(f *flowConn, data []byte, from netip.AddrPort) {
	l.mu.Lock()
	defer l.mu.Unlock()
	work := []flowDatagram{{data: data, from: from, to: f.local, ifindex: f.ifindex}}
	for len(work) > 0 {
		d := work[0]
		work = append(work[1:], l.dispatch(d)...)
	}
}

// forget removes the closed flow f.
func (l *FlowListener) forget(f *flowConn) {
	l.mu.Lock()
	if l.flows[f.remote] == f {
		delete(l.flows, f.remote)
	}
	l.mu.Unlock()
}

// flowConn is the Conn of one flow: its connected socket, and the datagrams
// read elsewhere before (pending).
type flowConn struct {
	l       *FlowListener
	remote  netip.AddrPort // unmapped
	local   netip.Addr
	ifindex int
	conn    *net.UDPConn // nil until opened
	born    uint64       // the listener's reads when it was opened

	mu       sync.Mutex
	pending  []flowDatagram
	accepted bool      // handed to Accept: pending no longer grows in order
	reading  bool      // a Read waits in the socket
	woken    bool      // the Read was woken by a deadline in the past
	deadline time.Time // the caller's read deadline
	closed   bool
}

// deliver queues a datagram of f read from another socket; a Read waiting
// in f's socket is woken to return it.
func (f *flowConn) deliver(d flowDatagram) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed || (f.conn == nil && len(f.pending) >= maxStarved) {
		return
	}
	if f.accepted {
		d.ts = 0 // late: after what the Conn may have read
	}
	f.pending = inOrder(f.pending, d)
	if f.reading && !f.woken {
		f.woken = true
		f.conn.SetReadDeadline(aLongTimeAgo)
	}
}

// inOrder adds d to pending in the order of the kernel's times of arrival:
// a flow's datagrams read from several sockets (the group's, and a new
// flow's socket that got them before it was connected) are read in the
// order in which they arrived. A datagram of unknown time goes last.
func inOrder(pending []flowDatagram, d flowDatagram) []flowDatagram {
	i := len(pending)
	for d.ts != 0 && i > 0 && pending[i-1].ts > d.ts {
		i--
	}
	pending = append(pending, flowDatagram{})
	copy(pending[i+1:], pending[i:])
	pending[i] = d
	return pending
}

// aLongTimeAgo is a read deadline that wakes a Read at once.
var aLongTimeAgo = time.Unix(1, 0)

// Read reads the flow's next datagram into b (the rest of a longer one is
// discarded, as a UDP socket's Read does).
func (f *flowConn) Read(b []byte) (int, error) {
	for {
		f.mu.Lock()
		if len(f.pending) > 0 {
			d := f.pending[0]
			f.pending[0] = flowDatagram{}
			f.pending = f.pending[1:]
			f.mu.Unlock()
			return copy(b, d.data), nil
		}
		f.reading = true
		f.mu.Unlock()
		n, from, err := f.conn.ReadFromUDPAddrPort(b)
		f.mu.Lock()
		f.reading = false
		woken := f.woken
		if woken {
			f.woken = false
			f.conn.SetReadDeadline(f.deadline)
		}
		f.mu.Unlock()
		if err != nil {
			if woken && isTimeout(err) {
				continue
			}
			return n, err
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		if from != f.remote {
			// Another flow's datagram, which reached this socket
			// before it was connected.
			f.l.redirect(f, append([]byte(nil), b[:n]...), from)
			continue
		}
		return n, nil
	}
}

// isTimeout reports whether err is a deadline's.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Write sends b to the flow's remote address.
func (f *flowConn) Write(b []byte) (int, error) { return f.conn.Write(b) }

// Close ends the flow: the remote's next datagram starts a new one.
func (f *flowConn) Close() error {
	f.mu.Lock()
	f.closed = true
	f.pending = nil
	f.mu.Unlock()
	f.l.forget(f)
	return f.conn.Close()
}

func (f *flowConn) LocalAddr() net.Addr  { return f.conn.LocalAddr() }
func (f *flowConn) RemoteAddr() net.Addr { return f.conn.RemoteAddr() }

func (f *flowConn) SetDeadline(t time.Time) error {
	if err := f.SetReadDeadline(t); err != nil {
		return err
	}
	return f.conn.SetWriteDeadline(t)
}

func (f *flowConn) SetReadDeadline(t time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deadline = t
	if f.woken {
		return nil // the woken Read sets it
	}
	return f.conn.SetReadDeadline(t)
}

func (f *flowConn) SetWriteDeadline(t time.Time) error { return f.conn.SetWriteDeadline(t) }

// Package bench measures what the reuse package costs over setting the
// socket options by hand, over plain net and over
// github.com/libp2p/go-reuseport, and what sharing a port buys. The
// benchmarks are in its tests; the throughput and fairness driver is
// cmd/throughput; run.sh produces every figure of ../BENCHMARKS.md.
//
// It is a module of its own so that the reuse package gains no dependency.
package bench

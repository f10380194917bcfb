module github.com/sockreuse/reuse/bench

go 1.21

require (
	github.com/cloudflare/tableflip v1.2.3
	github.com/google/go-cmp v0.7.0
	github.com/libp2p/go-reuseport v0.4.0
	github.com/sockreuse/reuse v0.0.0
	golang.org/x/sys v0.30.0
)

replace github.com/sockreuse/reuse => ../

module github.com/sockreuse/reuse/examples/quic

go 1.25.0

require (
	github.com/quic-go/quic-go v0.61.0
	github.com/sockreuse/reuse v0.0.0
)

require (
	golang.org/x/crypto v0.54.0 // indirect
	golang.org/x/net v0.56.0 // indirect
	golang.org/x/sys v0.47.0 // indirect
)

replace github.com/sockreuse/reuse => ../..

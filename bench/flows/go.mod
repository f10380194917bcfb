module github.com/sockreuse/reuse/bench/flows

go 1.24.0

require (
	github.com/pion/transport/v5 v5.1.4
	github.com/sockreuse/reuse v0.0.0
	golang.org/x/sys v0.41.0
)

require golang.org/x/net v0.34.0 // indirect

replace github.com/sockreuse/reuse => ../..

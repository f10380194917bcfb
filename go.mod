module github.com/sockreuse/reuse

go 1.21

require (
	github.com/google/go-cmp v0.7.0
	golang.org/x/sys v0.30.0
)

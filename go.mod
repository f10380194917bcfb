module github.com/sockreuse/reuse

go 1.21

require golang.org/x/sys v0.30.0

require github.com/google/go-cmp v0.7.0

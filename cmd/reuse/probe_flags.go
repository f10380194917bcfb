package main

import "flag"

// probeFlags parses the probe's command line. It is the same on every OS,
// so that -h and a wrong flag behave alike where the probe cannot run.
func probeFlags(args []string) (asJSON, asMarkdown bool, err error) {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	fs.BoolVar(&asMarkdown, "markdown", false, "print the matrix and the kernel's facts as markdown, for documentation")
	if err := parseArgs(fs, args); err != nil {
		return false, false, err
	}
	if asJSON && asMarkdown {
		return false, false, badFlag(fs, "-json and -markdown exclude each other")
	}
	return asJSON, asMarkdown, nil
}

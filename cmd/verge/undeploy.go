package main

import (
	"flag"
	"fmt"
	"io"
	"net/url"
)

func runUndeploy(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("undeploy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := addTargetFlags(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: verge undeploy [--net DIR | --to URL --token T] APP\n\nStops serving the app at every PoP. Its versions and its data stay.\n\nflags:")
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return &usageError{"expected one app name"}
	}
	op, err := target.operator()
	if err != nil {
		return err
	}
	if err := op.postJSON("DELETE", "/v1/apps/"+url.PathEscape(pos[0]), nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "verge: %s is no longer served\n", pos[0])
	return nil
}

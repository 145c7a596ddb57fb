package main

import (
	"flag"
	"fmt"
	"io"
	"net/url"
)

func runRollback(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rollback", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := addTargetFlags(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: verge rollback [--net DIR | --to URL --token T] APP [VERSION]\n\nMakes VERSION (default: the previous one) current at every PoP at once, with no gate.\n\nflags:")
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 1 || len(pos) > 2 {
		return &usageError{"expected an app name and optionally a version"}
	}
	op, err := target.operator()
	if err != nil {
		return err
	}
	req := map[string]string{}
	if len(pos) == 2 {
		req["version"] = pos[1]
	}
	var out struct{ Current string }
	if err := op.postJSON("POST", "/v1/apps/"+url.PathEscape(pos[0])+"/rollback", req, &out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "verge: %s is at %s on every PoP\n", pos[0], out.Current)
	return nil
}

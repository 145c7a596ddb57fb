package main

import (
	"fmt"
	"io"
	"net/url"
)

func runUndeploy(args []string, stdout, stderr io.Writer) error {
	op, pos, err := appCommand("undeploy", "usage: verge undeploy [--net DIR | --to URL --token T] APP\n\nStops serving the app at every PoP. Its versions and its data stay.", 0, args, stderr)
	if err != nil {
		return err
	}
	if err := op.postJSON("DELETE", "/v1/apps/"+url.PathEscape(pos[0]), nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "verge: %s is no longer served\n", pos[0])
	return nil
}

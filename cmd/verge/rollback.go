package main

import (
	"fmt"
	"io"
	"net/url"
)

func runRollback(args []string, stdout, stderr io.Writer) error {
	op, pos, err := appCommand("rollback", "usage: verge rollback [--net DIR | --to URL --token T] APP [VERSION]\n\nMakes VERSION (default: the previous one) current at every PoP at once, with no gate.", 1, args, stderr)
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

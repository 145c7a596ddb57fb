package main

import (
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/verge-edge/verge/internal/deploy"
)

func runApps(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("apps", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := addTargetFlags(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: verge apps [--net DIR | --to URL --token T]\n\nEvery app, its current version, and the version each PoP serves.\n\nflags:")
		fs.PrintDefaults()
	}
	if pos, err := parseInterspersed(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return &usageError{"verge apps takes no arguments"}
	}
	op, err := target.operator()
	if err != nil {
		return err
	}
	var out struct {
		Apps []deploy.AppView `json:"apps"`
	}
	if err := op.getJSON("/v1/apps", &out); err != nil {
		return err
	}
	if len(out.Apps) == 0 {
		fmt.Fprintln(stdout, "no apps deployed")
		return nil
	}
	for _, a := range out.Apps {
		line := fmt.Sprintf("%-20s current %s", a.Name, shortID(a.Current))
		if a.Rollout != "" {
			line += "  rolling out " + shortID(a.Rollout)
		}
		pops := make([]string, 0, len(a.PoPs))
		for id := range a.PoPs {
			pops = append(pops, id)
		}
		sort.Strings(pops)
		var at []string
		for _, id := range pops {
			st := a.PoPs[id]
			s := id + "=" + shortID(st.Version)
			if st.State != deploy.StateServing {
				s += "(" + st.State + ")"
			}
			at = append(at, s)
		}
		fmt.Fprintf(stdout, "%s\n    %s\n", line, strings.Join(at, " "))
	}
	return nil
}

package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/verge-edge/verge/internal/pop"
)

// multiFlag is a flag that may be given several times.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func runPurge(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("purge", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := addTargetFlags(fs)
	at := fs.String("pop", "", "with --net: send the purge to this PoP's admin API (default the central PoP); any PoP passes it on")
	var keys, urls multiFlag
	fs.Var(&keys, "key", "a surrogate key to purge (repeatable)")
	fs.Var(&urls, "url", "a URL to purge, absolute or a path with its query meaning every host of the app (repeatable)")
	all := fs.Bool("all", false, "purge everything the app has in the caches")
	soft := fs.Bool("soft", false, "mark stale (revalidated before use) instead of removing")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: verge purge [--net DIR [--pop ID] | --to URL --token T] APP (--key K... | --url U... | --all) [--soft]\n\nPurges an app's entries from the HTTP cache of every PoP. It returns once every\nreachable PoP has purged and names the others, which do not serve from their\ncache until they have caught up.\n\nflags:")
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return &usageError{"expected one app name"}
	}
	if !*all && len(keys) == 0 && len(urls) == 0 {
		return &usageError{"say what to purge: --key K, --url U or --all"}
	}
	var op *operator
	if *at != "" {
		if *target.net == "" {
			return &usageError{"--pop needs --net DIR"}
		}
		nf, err := readNet(*target.net)
		if err != nil {
			return err
		}
		p, err := nf.pop(*at)
		if err != nil {
			return err
		}
		op = &operator{base: "http://" + p.Admin, token: nf.Token, client: &http.Client{}}
	} else if op, err = target.operator(); err != nil {
		return err
	}
	body := map[string]any{"soft": *soft}
	switch {
	case *all:
		body["all"] = true
	case len(keys) > 0:
		body["keys"] = []string(keys)
	}
	if len(urls) > 0 {
		body["urls"] = []string(urls)
	}
	start := time.Now()
	var res pop.PurgeResult
	if err := op.postJSON("POST", "/v1/apps/"+url.PathEscape(pos[0])+"/cache/purge", body, &res); err != nil {
		return err
	}
	took := time.Since(start)
	ids := make([]string, 0, len(res.Purged))
	total := 0
	for id, n := range res.Purged {
		ids = append(ids, id)
		total += n
	}
	sort.Strings(ids)
	fmt.Fprintf(stdout, "verge: purged %d entries of %s at %d PoPs (%s) in %v\n", total, pos[0], len(ids), strings.Join(ids, ", "), took.Round(time.Millisecond))
	if len(res.Unreachable) > 0 {
		fmt.Fprintf(stdout, "verge: not reached: %s; they serve without their cache until they have synced with the centre %s\n", strings.Join(res.Unreachable, ", "), res.Centre)
	}
	return nil
}

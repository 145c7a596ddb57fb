package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

func runLogs(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("logs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("net", "", "the network's directory (verge net up --dir)")
	app := fs.String("app", "", "only lines about this app")
	popID := fs.String("pop", "", "only this PoP's lines")
	since := fs.Duration("since", 0, "only lines of the last D (e.g. 5m)")
	follow := fs.Bool("follow", false, "keep printing lines as they are written")
	asJSON := fs.Bool("json", false, "print JSON lines, with the PoP in a \"pop\" field")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: verge logs --net DIR [--app A] [--pop P] [--since D] [--follow] [--json]\n\nMerges every PoP's log in time order, the PoP named on each line.\n\nflags:")
		fs.PrintDefaults()
	}
	if pos, err := parseInterspersed(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return &usageError{"verge logs takes no arguments"}
	}
	nf, err := readNet(*dir)
	if err != nil {
		return err
	}
	var tails []*logTailer
	for _, p := range nf.PoPs {
		if *popID != "" && p.ID != *popID {
			continue
		}
		tails = append(tails, &logTailer{pop: p.ID, path: filepath.Join(filepath.Dir(p.Config), "log")})
	}
	if len(tails) == 0 {
		return &usageError{fmt.Sprintf("no PoP %q in this network", *popID)}
	}
	f := logFilter{app: *app, asJSON: *asJSON}
	if *since > 0 {
		f.since = time.Now().Add(-*since)
	}
	var lines []logLine
	for _, t := range tails {
		lines = append(lines, t.read()...)
	}
	f.print(stdout, lines)
	if !*follow {
		return nil
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// Lines written in the same instant at two PoPs may be read a poll
	// apart: each round prints what is older than the reorder window and
	// keeps the rest for the next, so the merged order holds.
	const poll, window = 200 * time.Millisecond, 500 * time.Millisecond
	var pending []logLine
	for {
		select {
		case <-ctx.Done():
			f.print(stdout, pending)
			return nil
		case <-time.After(poll):
		}
		for _, t := range tails {
			pending = append(pending, t.read()...)
		}
		cut := time.Now().Add(-window)
		sort.SliceStable(pending, func(i, j int) bool { return pending[i].at.Before(pending[j].at) })
		n := sort.Search(len(pending), func(i int) bool { return pending[i].at.After(cut) })
		f.print(stdout, pending[:n])
		pending = append([]logLine(nil), pending[n:]...)
	}
}

// logLine is one line of a PoP's log.
type logLine struct {
	pop  string
	at   time.Time
	raw  []byte
	json map[string]any // nil: not a JSON line
}

// logTailer reads a PoP's log file from where it stopped.
type logTailer struct {
	pop    string
	path   string
	offset int64
	last   time.Time // of the last line with a time: lines without one take it
	rest   []byte    // an unfinished last line
}

func (t *logTailer) read() []logLine {
	f, err := os.Open(t.path)
	if err != nil {
		return nil
	}
	defer f.Close()
	if _, err := f.Seek(t.offset, io.SeekStart); err != nil {
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(f, 64<<20))
	t.offset += int64(len(b))
	b = append(t.rest, b...)
	end := bytes.LastIndexByte(b, '\n')
	if end < 0 {
		t.rest = b
		return nil
	}
	t.rest = append([]byte(nil), b[end+1:]...)
	var out []logLine
	sc := bufio.NewScanner(bytes.NewReader(b[:end+1]))
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		raw := append([]byte(nil), sc.Bytes()...)
		if len(bytes.TrimSpace(raw)) == 0 {
			continue
		}
		l := logLine{pop: t.pop, raw: raw, at: t.last}
		var m map[string]any
		if json.Unmarshal(raw, &m) == nil {
			l.json = m
			if s, ok := m["time"].(string); ok {
				if at, err := time.Parse(time.RFC3339Nano, s); err == nil {
					l.at, t.last = at, at
				}
			}
		} else if rest, ok := strings.CutPrefix(string(raw), "---- "); ok {
			// verge net's marker of a process start: "---- TIME start".
			if at, err := time.Parse(time.RFC3339Nano, strings.TrimSuffix(rest, " start")); err == nil {
				l.at, t.last = at, at
			}
		}
		out = append(out, l)
	}
	return out
}

type logFilter struct {
	app    string
	since  time.Time
	asJSON bool
}

// print writes the lines that pass the filter, in time order.
func (f logFilter) print(w io.Writer, lines []logLine) {
	sort.SliceStable(lines, func(i, j int) bool { return lines[i].at.Before(lines[j].at) })
	for _, l := range lines {
		if !f.since.IsZero() && l.at.Before(f.since) {
			continue
		}
		if f.app != "" && (l.json == nil || l.json["app"] != f.app) {
			continue
		}
		if f.asJSON {
			m := l.json
			if m == nil {
				m = map[string]any{"msg": string(l.raw)}
			}
			m["pop"] = l.pop
			b, _ := json.Marshal(m)
			fmt.Fprintf(w, "%s\n", b)
			continue
		}
		if l.json == nil {
			fmt.Fprintf(w, "%-4s %s\n", l.pop, l.raw)
			continue
		}
		var b strings.Builder
		fmt.Fprintf(&b, "%s %-4s %-5v %v", l.at.Local().Format("15:04:05.000"), l.pop, l.json["level"], l.json["msg"])
		keys := make([]string, 0, len(l.json))
		for k := range l.json {
			if k != "time" && k != "level" && k != "msg" && k != "pop" {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, " %s=%v", k, l.json[k])
		}
		fmt.Fprintln(w, b.String())
	}
}

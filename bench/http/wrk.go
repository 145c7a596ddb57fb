package main

import (
	"bufio"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// wrkResult is what we keep from one `wrk --latency` run.
type wrkResult struct {
	Requests     int64   `json:"requests"`
	Seconds      float64 `json:"seconds"`
	RPS          float64 `json:"rps"`
	P50ms        float64 `json:"p50_ms"`
	P75ms        float64 `json:"p75_ms"`
	P90ms        float64 `json:"p90_ms"`
	P99ms        float64 `json:"p99_ms"`
	Non2xx3xx    int64   `json:"non_2xx_3xx"`
	SocketErrors int64   `json:"socket_errors"`
	// The server's CPU time per request in this run (bench/http reads it
	// for Verge's side only).
	CPUusPerRequest float64 `json:"server_cpu_us_per_request,omitempty"`
}

// parseWrk reads the text wrk 4.x prints with --latency. It insists on the
// throughput and the 50th and 99th percentiles: a run without them is an
// error, never a row of zeros in the results.
func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	var haveRPS, haveP50, haveP99 bool
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		var err error
		switch {
		case f[0] == "Requests/sec:" && len(f) == 2:
			r.RPS, err = strconv.ParseFloat(f[1], 64)
			haveRPS = err == nil
		case len(f) == 2 && strings.HasSuffix(f[0], "%"):
			// Latency distribution: "50%  620.00us".
			var d float64
			if d, err = parseWrkDuration(f[1]); err != nil {
				break
			}
			switch f[0] {
			case "50%":
				r.P50ms, haveP50 = d, true
			case "75%":
				r.P75ms = d
			case "90%":
				r.P90ms = d
			case "99%":
				r.P99ms, haveP99 = d, true
			}
		case len(f) >= 4 && f[1] == "requests" && f[2] == "in":
			// "225000 requests in 5.00s, 30.00MB read"
			if r.Requests, err = strconv.ParseInt(f[0], 10, 64); err != nil {
				break
			}
			var d float64
			d, err = parseWrkDuration(strings.TrimSuffix(f[3], ","))
			r.Seconds = d / 1e3
		case strings.Contains(sc.Text(), "Non-2xx or 3xx responses:"):
			r.Non2xx3xx, err = strconv.ParseInt(f[len(f)-1], 10, 64)
		case f[0] == "Socket" && len(f) > 2 && f[1] == "errors:":
			// "Socket errors: connect 0, read 1, write 0, timeout 3"
			for i := 2; i+1 < len(f); i += 2 {
				n, perr := strconv.ParseInt(strings.TrimSuffix(f[i+1], ","), 10, 64)
				if perr != nil {
					err = perr
					break
				}
				r.SocketErrors += n
			}
		}
		if err != nil {
			return r, fmt.Errorf("unexpected wrk output line %q: %v", sc.Text(), err)
		}
	}
	if !haveRPS || !haveP50 || !haveP99 {
		return r, fmt.Errorf("wrk output lacks Requests/sec or the 50%%/99%% latencies (was --latency given?):\n%s", out)
	}
	return r, nil
}

// parseWrkDuration converts wrk's "620.00us", "2.10ms", "1.02s", "1.50m" to
// milliseconds.
func parseWrkDuration(s string) (float64, error) {
	units := []struct {
		suffix string
		ms     float64
	}{{"us", 1e-3}, {"ms", 1}, {"s", 1e3}, {"m", 60e3}, {"h", 3600e3}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return 0, fmt.Errorf("bad duration %q", s)
			}
			// Round to the nanosecond: wrk prints two decimals, and
			// 0.052000000000000005 helps nobody reading the JSON.
			return math.Round(v*u.ms*1e6) / 1e6, nil
		}
	}
	return 0, fmt.Errorf("bad duration %q: no unit", s)
}

// wrkThreads keeps wrk's thread count at most the connection count, which
// wrk requires.
func wrkThreads(threads, conns int) int {
	return max(1, min(threads, conns))
}

func wrkArgs(threads, conns int, d time.Duration, url string) []string {
	return []string{
		"-t" + strconv.Itoa(wrkThreads(threads, conns)),
		"-c" + strconv.Itoa(conns),
		"-d" + strconv.Itoa(int(max(d.Round(time.Second), time.Second)/time.Second)) + "s",
		"--latency", url,
	}
}

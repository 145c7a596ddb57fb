package wasm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/verge-edge/verge"
)

// A guest that keeps computing past FairSlice runs on a thread at nice 19
// while it does, and the thread is back at its priority once the run
// ends (it goes on to run anything of the process's). Not parallel: it
// counts every thread of the process.
func TestCPUBoundRunDemoted(t *testing.T) {
	if !canDemote() {
		t.Skip("this process may not raise a thread's priority back (it needs CAP_SYS_NICE), so no run is demoted")
	}
	if n := demotedThreads(t); n != 0 {
		t.Fatalf("%d threads at nice %d before the run", n, demotedNice)
	}
	e := newTestEngine(t)
	f := load(t, e, verge.Function{Module: fixture("loop.wasm"), Executor: verge.ExecutorVerge,
		Limits: verge.Limits{CPUTime: 300 * time.Millisecond, WallTime: 10 * time.Second}})
	done := make(chan error, 1)
	go func() { _, err := f.Serve(context.Background(), get("/")); done <- err }()
	var err error
	seen := false
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if !seen && demotedThreads(t) > 0 {
			seen = true
		}
		select {
		case err = <-done:
		default:
			if time.Now().Before(deadline) {
				continue
			}
			t.Fatal("the looping guest was not stopped within 10 s")
		}
		break
	}
	var re *Error
	if !errors.As(err, &re) || re.Kind != KindCPUTime {
		t.Fatalf("got %v, want the CPU time limit", err)
	}
	if !seen {
		t.Error("no thread was at nice 19 while the guest looped for 300 ms of CPU time")
	}
	if n := demotedThreads(t); n != 0 {
		t.Errorf("%d threads still at nice %d after the run", n, demotedNice)
	}
}

// demotedThreads counts the process's threads at demotedNice
// (/proc/self/task/*/stat, field 19).
func demotedThreads(t *testing.T) int {
	t.Helper()
	stats, _ := filepath.Glob("/proc/self/task/*/stat")
	n := 0
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // the thread ended
		}
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) > 16 && fields[16] == "19" {
			n++
		}
	}
	return n
}

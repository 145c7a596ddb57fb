// Package proc runs the servers a benchmark measures as subprocesses: started
// until they print their ready line, stopped with their process group, and
// watched until they go idle.
package proc

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// Progress reports what the children do that a benchmark's reader should
// know (a slow stop, a server still busy); a command sets it to its own
// progress line writer.
var Progress = func(format string, args ...any) {}

// readyLine matches the line a server prints once it accepts connections:
// "verge: serving http://127.0.0.1:8080" (and the baseline's "nethttp: ...").
var readyLine = regexp.MustCompile(`serving http://(\S+)`)

// Child is a server subprocess. Its stdout and stderr go to a log file rather
// than to our output: a per-request log line at 40k req/s would otherwise
// measure the terminal.
type Child struct {
	Name    string
	Cmd     *exec.Cmd
	Addr    string // host:port from the ready line
	LogPath string
	stdin   io.Closer
	done    chan struct{} // closed when the process has been reaped
	stopped atomic.Bool   // stop was called: an exit is expected
	exited  atomic.Bool   // the process exited before stop
}

// Start starts path with args and waits until it prints its ready line.
// On any failure the process is stopped and the error quotes the log's tail.
func Start(ctx context.Context, name, path string, args, env []string, logPath string, timeout time.Duration) (*Child, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = logf
	setProcAttr(cmd)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	// A pipe we never write: the baseline exits when it closes, which happens
	// at the latest when this process dies.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s (%s): %v", name, path, err)
	}
	c := &Child{Name: name, Cmd: cmd, LogPath: logPath, stdin: stdin, done: make(chan struct{})}

	ready := make(chan string, 1)
	copied := make(chan struct{})
	go func() {
		// Keep draining after the ready line so the child never blocks on a
		// full pipe.
		defer close(copied)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logf, line)
			if m := readyLine.FindStringSubmatch(line); m != nil {
				select {
				case ready <- m[1]:
				default:
				}
			}
		}
		io.Copy(logf, stdout) // a line over 1 MiB stops the scanner, not the drain
	}()
	go func() {
		<-copied // Wait must follow the last read from the pipe
		cmd.Wait()
		logf.Close()
		if !c.stopped.Load() {
			c.exited.Store(true)
		}
		close(c.done)
	}()

	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case c.Addr = <-ready:
		return c, nil
	case <-c.done:
		return nil, fmt.Errorf("%s exited before serving (%s)\n%s", name, cmd.ProcessState, tail(logPath))
	case <-timer.C:
		c.Stop()
		return nil, fmt.Errorf("%s printed no %q line within %v\n%s", name, "serving http://ADDR", timeout, tail(logPath))
	case <-ctx.Done():
		c.Stop()
		return nil, ctx.Err()
	}
}

// exitedEarly reports whether the process died on its own.
func (c *Child) ExitedEarly() bool { return c.exited.Load() }

// CloseStdin closes the child's stdin, which a server that watches it (the
// baselines do, so they never outlive their harness) takes as its end.
func (c *Child) CloseStdin() error { return c.stdin.Close() }

// Done is closed once the process has exited and been reaped.
func (c *Child) Done() <-chan struct{} { return c.done }

// stop asks the process group to terminate (verge dev shuts down cleanly on
// SIGTERM), then kills it after a grace period. It returns once the process
// has been reaped and is safe to call more than once.
func (c *Child) Stop() {
	if !c.stopped.CompareAndSwap(false, true) {
		<-c.done
		return
	}
	c.stdin.Close()
	select {
	case <-c.done:
		return
	default:
	}
	signalGroup(c.Cmd.Process, syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		Progress("%s did not stop within 10s of SIGTERM; killing it", c.Name)
		signalGroup(c.Cmd.Process, syscall.SIGKILL)
		<-c.done
	}
}

// tail returns the last lines of a log file for an error message.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	const limit = 4096
	if len(b) > limit {
		b = b[len(b)-limit:]
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "(no output)"
	}
	return "--- " + path + " (tail) ---\n" + s
}

// quiesce waits until the process has been nearly idle (under 5% of one core)
// for a 200 ms window and has no runnable thread, at most maxWait. After wrk stops, a server may still be
// working through requests whose clients are gone (a fresh-instance executor
// behind 32 connections can have dozens queued); measuring the other server
// meanwhile would charge it for that work. Where CPU time cannot be read, it
// pauses for one second instead.
func (c *Child) Quiesce(maxWait time.Duration) {
	const window, idle = 200 * time.Millisecond, 10 * time.Millisecond
	start := time.Now()
	prev, err := CPUTime(c.Cmd.Process.Pid)
	if err != nil {
		time.Sleep(time.Second)
		return
	}
	for time.Since(start) < maxWait {
		select {
		case <-c.done:
			return
		case <-time.After(window):
		}
		cur, err := CPUTime(c.Cmd.Process.Pid)
		if err != nil {
			return
		}
		if busy, err := runnable(c.Cmd.Process.Pid); err == nil && !busy && cur-prev < idle {
			if d := time.Since(start); d > time.Second {
				Progress("%s took %v to go idle after the last run", c.Name, d.Round(100*time.Millisecond))
			}
			return
		}
		prev = cur
	}
	Progress("%s still busy %v after the last run; measuring anyway", c.Name, maxWait)
}

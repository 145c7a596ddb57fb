//go:build !linux

package proc

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// setProcAttr leaves the child in our process group: outside Linux the
// harness relies on stop alone.
func setProcAttr(cmd *exec.Cmd) {}

func signalGroup(p *os.Process, sig syscall.Signal) {
	if sig == syscall.SIGKILL || p.Signal(sig) != nil {
		p.Kill()
	}
}

// cpuTime is not available here; quiesce falls back to a fixed pause.
func CPUTime(pid int) (time.Duration, error) {
	return 0, errors.New("per-process CPU time is only read on Linux")
}

func runnable(pid int) (bool, error) {
	return false, errors.New("thread states are only read on Linux")
}

package wasm

import (
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// A run that keeps executing guest code past FairSlice is CPU-bound work;
// the requests around it (HTTP, the gateway, other apps' short runs) are
// latency-bound. The slots decide which guest code runs; the kernel decides
// whose thread gets a core. A CPU-bound run's thread is demoted to the
// lowest priority (nice 19) until the run ends or blocks, so that it takes
// a core only when nothing else wants it: on an idle machine it loses
// nothing, beside a light app it leaves the cores to that app's serving
// path. See RATIONALE.md, "CPU-bound runs yield the processor".

// demotedNice is the nice value of a demoted run's thread.
const demotedNice = 19

// canDemote reports whether this process may give a thread its priority
// back once lowered (CAP_SYS_NICE, or an RLIMIT_NICE that allows it):
// without that, a demoted thread would stay demoted for whatever the
// runtime runs on it next, so runs are not demoted at all.
var canDemote = sync.OnceValue(func() bool {
	ok := make(chan bool)
	go func() {
		// Left locked if the priority cannot be restored: the thread then
		// ends with this goroutine.
		runtime.LockOSThread()
		tid := unix.Gettid()
		base, err := threadNice(tid)
		if err != nil || base >= demotedNice || unix.Setpriority(unix.PRIO_PROCESS, tid, base+1) != nil {
			ok <- false
			return
		}
		if unix.Setpriority(unix.PRIO_PROCESS, tid, base) != nil {
			ok <- false
			return
		}
		runtime.UnlockOSThread()
		ok <- true
	}()
	return <-ok
})

// threadNice is a thread's nice value (getpriority(2)'s system call
// answers 20 - nice).
func threadNice(tid int) (int, error) {
	p, err := unix.Getpriority(unix.PRIO_PROCESS, tid)
	return 20 - p, err
}

// demote lowers the priority of the run's thread (the run is locked to
// it), once.
func (r *run) demote() {
	if r.demoted != 0 || !canDemote() {
		return
	}
	tid := unix.Gettid()
	base, err := threadNice(tid)
	if err != nil || base >= demotedNice {
		return
	}
	if unix.Setpriority(unix.PRIO_PROCESS, tid, demotedNice) == nil {
		r.demoted, r.baseNice = tid, base
	}
}

// promote gives the thread its priority back before the run leaves it.
func (r *run) promote() {
	if r.demoted == 0 {
		return
	}
	unix.Setpriority(unix.PRIO_PROCESS, r.demoted, r.baseNice)
	r.demoted = 0
}

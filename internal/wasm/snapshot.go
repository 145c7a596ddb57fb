package wasm

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/tetratelabs/wazero/api"

	"github.com/verge-edge/verge"
	"github.com/verge-edge/verge/internal/memalloc"
)

// A snapshot is an instance's state right after its initialisation: its
// linear memory and its mutable globals. wasmbin.Instrument checked that
// nothing else of the instance can change (tables, dropped segments) or
// flags the instance when it does (WASI calls that change its files), so an
// instance whose memory and globals are set back to the snapshot is, to the
// guest, a freshly initialised one. Restoring costs what copying back the
// pages the last request wrote costs (memalloc.Memory.Restore), where
// running a Go guest's _initialize costs most of a millisecond.
//
// What a snapshot cannot capture is outside the instance: the clocks read
// during initialisation (they are live again when a request runs) and the
// randomness drawn then. Seeds a guest registers with the reseed call
// (during its verge_snapshot export) are refilled with fresh random bytes in
// every restored instance; anything else drawn at initialisation is shared
// by every instance of the function.
type snapshot struct {
	mem     *memalloc.Snapshot
	globals []uint64   // values of the mutable globals, in Function.globals order
	reseed  [][2]int64 // guest memory ranges (offset, length) refilled per instance
}

// SnapshotExport is the optional export a guest uses to prepare the
// snapshot: the host calls it once, after _initialize, and the guest may
// then register its seeds with the reseed host call.
const SnapshotExport = "verge_snapshot"

// maxReseed bounds the bytes a guest may register for reseeding.
const maxReseed = 64 << 10

// snapshotPrep is what a guest's verge_snapshot registers.
type snapshotPrep struct {
	ranges [][2]int64
	total  int64
}

var errTainted = errors.New("the instance called a WASI function that changes it outside its memory")

// takeSnapshot lets the guest prepare (verge_snapshot), then copies inst's
// memory and globals into f.snap, and restores inst from it so that its
// later resets are cheap too.
func (f *Function) takeSnapshot(ctx context.Context, inst *instance) error {
	prep := &snapshotPrep{}
	if fn := inst.mod.ExportedFunction(SnapshotExport); fn != nil {
		cs := &Call{req: &Request{ID: "snapshot"}, app: f.Spec.App, prep: prep, log: f.log}
		_, err := limited(ctx, f.share, initCPUTime, time.Now().Add(f.Limits.WallTime), cs, f.env(), func(ctx context.Context) error {
			res, err := fn.Call(ctx)
			if err == nil && len(res) > 0 && res[0] != 0 {
				err = fmt.Errorf("%s returned %d", SnapshotExport, res[0])
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("preparing the snapshot: %w", err)
		}
	}
	if inst.taint == nil || len(inst.globals) != len(f.globals) {
		return errors.New("the instance's globals are not exported")
	}
	if inst.taint.Get() != 0 {
		return fmt.Errorf("initialisation: %w", errTainted)
	}
	m := inst.mod.Memory()
	b, ok := m.Read(0, m.Size())
	if !ok {
		return errors.New("cannot read the instance's memory")
	}
	mem, err := memalloc.NewSnapshot(b)
	if err != nil {
		return err
	}
	s := &snapshot{mem: mem, reseed: prep.ranges}
	for _, g := range inst.globals {
		s.globals = append(s.globals, g.Get())
	}
	f.snap = s
	if err := f.restore(inst); err != nil {
		f.snap = nil
		mem.Close()
		return err
	}
	return nil
}

// bind finds what the host uses of a new instance: its handler and the
// exported globals.
func (f *Function) bind(mod api.Module, mem *guestMemory) *instance {
	entry := HandleExport
	if f.Spec.Executor == verge.ExecutorWAGI {
		entry = "_start"
	}
	inst := &instance{mod: mod, handle: mod.ExportedFunction(entry), mem: mem}
	inst.callHandle = inst.callHandler
	for _, name := range f.globals {
		g, ok := mod.ExportedGlobal(name).(api.MutableGlobal)
		if !ok {
			inst.globals, inst.taint = nil, nil
			break
		}
		inst.globals = append(inst.globals, g)
		inst.taint = g // the taint global is exported last
	}
	return inst
}

// restore makes inst the instance the snapshot was taken of: memory,
// globals and, freshly drawn, the seeds the guest registered.
func (f *Function) restore(inst *instance) error {
	s := f.snap
	if inst.taint == nil || inst.mem.pooled == nil {
		return errors.New("the instance cannot be restored")
	}
	if inst.taint.Get() != 0 {
		return errTainted
	}
	if inst.mod.IsClosed() {
		return errors.New("the instance exited")
	}
	if err := inst.mem.pooled.Restore(s.mem); err != nil {
		return err
	}
	for i, g := range inst.globals {
		g.Set(s.globals[i])
	}
	if len(s.reseed) > 0 {
		m := inst.mod.Memory()
		for _, r := range s.reseed {
			b, ok := m.Read(uint32(r[0]), uint32(r[1]))
			if !ok {
				return errors.New("a reseed range lies outside memory")
			}
			rand.Read(b)
		}
	}
	inst.mem.exceeded.Store(false)
	inst.served = 0
	return nil
}

// instanceFromSnapshot instantiates the module without running its
// initialisation and restores it from the snapshot.
func (f *Function) instanceFromSnapshot(ctx context.Context) (*instance, error) {
	ctx = context.WithoutCancel(ctx)
	mem := f.newMemory()
	cfg, streams := f.instanceConfig()
	mod, err := f.rt.InstantiateModule(withMemory(ctx, mem), f.compiled, cfg)
	if err != nil {
		return nil, f.runError(ctx, mem, err)
	}
	inst := f.bind(mod, mem)
	inst.streams = streams
	m := mod.Memory()
	size := f.snap.mem.Size()
	if cur := uint64(m.Size()); cur < size {
		if _, ok := m.Grow(uint32((size - cur) / 65536)); !ok {
			inst.close(ctx)
			return nil, errors.New("cannot grow a new instance's memory to the snapshot's size")
		}
	}
	if err := f.restore(inst); err != nil {
		inst.close(ctx)
		return nil, err
	}
	return inst, nil
}

// hostReseed: reseed(ptr, len) registers [ptr, ptr+len) as seed material,
// refilled with fresh random bytes in every instance restored from the
// snapshot. Only during verge_snapshot.
func hostReseed(_ context.Context, cs *Call, a []uint64) uint32 {
	if cs.prep == nil {
		return StatusUnsupported
	}
	ptr, n := uint32(a[0]), uint32(a[1])
	if !cs.Writable(ptr, n) {
		return StatusMemory
	}
	if cs.prep.total+int64(n) > maxReseed {
		return cs.Refuse(StatusLimit, "at most %d bytes of seeds", maxReseed)
	}
	cs.prep.total += int64(n)
	cs.prep.ranges = append(cs.prep.ranges, [2]int64{int64(ptr), int64(n)})
	return StatusOK
}

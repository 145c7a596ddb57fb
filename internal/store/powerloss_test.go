package store

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestPowerLoss cuts the power under a busy store. kill -9 (TestCrashRecovery)
// cannot show that writes are fsynced before they are acknowledged: the
// page cache outlives the process. Here the store runs on Pebble's crashable
// in-memory filesystem, and a crash clone keeps exactly what was synced plus
// a random share of what was not (0%, 100% and random in between), as a
// power loss may. Every write acknowledged before the cut must be there after
// reopening, and the log must be consistent (checkCrashState).
func TestPowerLoss(t *testing.T) {
	t.Parallel()
	for round, unsynced := range []int{0, 100, -1, -1, -1} {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(round)))
			if unsynced < 0 {
				unsynced = rng.IntN(101)
			}
			fs := vfs.NewCrashableMem()
			s, err := Open("/pop", Options{Origin: "pop-a", fs: fs})
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			var acks []ack
			cut := time.Duration(50+rng.IntN(250)) * time.Millisecond
			done := make(chan error, 1)
			go func() {
				done <- crashWorkload(s, uint64(round), time.Now().Add(cut+100*time.Millisecond), func(a ack) {
					mu.Lock()
					acks = append(acks, a)
					mu.Unlock()
				})
			}()
			time.Sleep(cut)
			// What was acknowledged before the cut was synced before it.
			mu.Lock()
			before := append([]ack(nil), acks...)
			mu.Unlock()
			crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: unsynced, RNG: rand.New(rand.NewPCG(rng.Uint64(), 1))})
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			s.Close()
			if len(before) == 0 {
				t.Fatal("no write was acknowledged before the cut")
			}

			s, err = Open("/pop", Options{Origin: "pop-a", fs: crashed})
			if err != nil {
				t.Fatalf("reopening after a power loss (%d%% of unsynced data kept): %v", unsynced, err)
			}
			defer s.Close()
			checkCrashState(t, s, before)
			t.Logf("%d%% of unsynced data kept: %d writes acknowledged before the cut survived; the log has %d local entries",
				unsynced, len(before), s.Seqs()["pop-a"])
		})
	}
}

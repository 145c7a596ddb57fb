package lincheck

import (
	"testing"

	"github.com/anishathalye/porcupine"
)

// TestModelsCatchViolations feeds the models histories that are not
// linearizable: a checker that accepts everything would pass every test
// that uses it.
func TestModelsCatchViolations(t *testing.T) {
	t.Parallel()
	op := func(in In, call, ret int64, out Out) porcupine.Operation {
		return porcupine.Operation{Input: in, Call: call, Return: ret, Output: out}
	}
	bad := map[string]struct {
		m   porcupine.Model
		ops []porcupine.Operation
	}{
		"two owners": {ClaimModel, []porcupine.Operation{
			op(In{Op: Claim, Key: "k", Owner: "a"}, 0, 1, Out{OK: true, Owner: "a"}),
			op(In{Op: Claim, Key: "k", Owner: "b"}, 2, 3, Out{OK: true, Owner: "b"}),
		}},
		"oversold": {CounterModel, []porcupine.Operation{
			op(In{Op: Restock, Key: "c", N: 1}, 0, 1, Out{N: 1}),
			op(In{Op: Take, Key: "c", N: 1}, 2, 3, Out{OK: true, N: 0}),
			op(In{Op: Take, Key: "c", N: 1}, 2, 3, Out{OK: true, N: 0}),
		}},
		"lost take": {CounterModel, []porcupine.Operation{
			op(In{Op: Restock, Key: "c", N: 2}, 0, 1, Out{N: 2}),
			op(In{Op: Take, Key: "c", N: 1}, 2, 3, Out{OK: true, N: 1}),
			op(In{Op: Counter, Key: "c"}, 4, 5, Out{N: 2}),
		}},
		"double update": {DocModel, []porcupine.Operation{
			op(In{Op: UpdateDoc, Key: "d", Rev: 0, Owner: "x"}, 0, 1, Out{OK: true, Rev: 1, DocN: 1, DocLast: "x"}),
			op(In{Op: UpdateDoc, Key: "d", Rev: 0, Owner: "y"}, 2, 3, Out{OK: true, Rev: 1, DocN: 1, DocLast: "y"}),
		}},
	}
	for name, c := range bad {
		if porcupine.CheckOperations(c.m, c.ops) {
			t.Errorf("%s: accepted", name)
		}
	}
	// A pending take may or may not have happened.
	ok := []porcupine.Operation{
		op(In{Op: Restock, Key: "c", N: 2}, 0, 1, Out{N: 2}),
		op(In{Op: Take, Key: "c", N: 1}, 2, PendingReturn, Out{Unknown: true}),
		op(In{Op: Counter, Key: "c"}, 4, 5, Out{N: 2}),
		op(In{Op: Counter, Key: "c"}, 6, 7, Out{N: 1}),
	}
	if !porcupine.CheckOperations(CounterModel, ok) {
		t.Error("pending take applied late: rejected")
	}
}

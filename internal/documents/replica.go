package documents

import (
	"errors"
	"fmt"

	"github.com/verge-edge/verge/crdt"
	"github.com/verge-edge/verge/internal/store"
)

// Merge folds a peer's delta or whole document state (either crdt encoding)
// into state (nil if this PoP has no replica yet) and returns the new state.
// It is the merge function replication hands to the store. Bytes from the
// wire are untrusted: a malformed item is an error and state is unchanged.
func (s *Service) Merge(k store.Key, state, item []byte) ([]byte, error) {
	x, err := decodeItem(item)
	if err != nil {
		return nil, err
	}
	d := crdt.NewDoc()
	if state != nil {
		if d, err = decode(k, state); err != nil {
			return nil, err
		}
	}
	if err := d.Merge(x); err != nil {
		return nil, fmt.Errorf("merging into %s: %w", k, err)
	}
	out, err := d.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("document %s: encoding: %w", k, err)
	}
	if len(out) > s.maxDoc {
		return nil, fmt.Errorf("%w: document %s would take %d bytes after the merge, the limit is %d", ErrTooLarge, k, len(out), s.maxDoc)
	}
	// Peers' writes are counted, never refused: replicas must converge.
	if s.counting(k.App) {
		s.usageOf(k.App).bytes.Add(int64(len(out) - len(state)))
	}
	return out, nil
}

// decodeItem decodes a crdt Delta or Doc encoding into a Delta.
func decodeItem(b []byte) (*crdt.Delta, error) {
	if len(b) < 2 || b[0] != 'V' {
		return nil, errors.New("replication item: not a crdt encoding")
	}
	switch b[1] {
	case 'd':
		return crdt.DecodeDelta(b)
	case 'D':
		d, err := crdt.DecodeDoc(b)
		if err != nil {
			return nil, err
		}
		return d.Snapshot(), nil
	}
	return nil, fmt.Errorf("replication item: kind %q is neither a document nor a delta", b[1])
}

// State returns the document's stored CRDT state (for anti-entropy and for
// shipping a coalesced document), whatever its app's manifest says.
func (s *Service) State(k store.Key) ([]byte, bool, error) { return s.st.Get(k) }

package app

import (
	"context"
	"errors"

	"github.com/verge-edge/verge/crdt"
	"github.com/verge-edge/verge/internal/documents"
	"github.com/verge-edge/verge/internal/wasm"
)

// Documents connects the runtime's document calls to a PoP's data service,
// translating its errors into ABI statuses. svc nil gives nil: functions then
// get StatusUnsupported.
func Documents(svc *documents.Service) wasm.Documents {
	if svc == nil {
		return nil
	}
	return adapter{svc}
}

type adapter struct{ s *documents.Service }

func (d adapter) Get(app, coll, key string) ([]byte, bool, error) {
	doc, found, err := d.s.Get(app, coll, key)
	return doc, found, status(err)
}

func (d adapter) Update(ctx context.Context, app, coll, key string, ops []crdt.Op) ([]byte, error) {
	doc, err := d.s.Update(ctx, app, coll, key, ops)
	return doc, status(err)
}

func (d adapter) Delete(ctx context.Context, app, coll, key string) (bool, error) {
	found, err := d.s.Delete(ctx, app, coll, key)
	return found, status(err)
}

func (d adapter) List(app, coll, after string, limit int) ([]string, string, error) {
	keys, next, err := d.s.List(app, coll, after, limit)
	return keys, next, status(err)
}

func status(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, documents.ErrNotFound):
		return wasm.ErrDocNotFound
	case errors.Is(err, documents.ErrTooLarge):
		return wasm.LimitDoc(err)
	case errors.Is(err, documents.ErrInvalid), errors.Is(err, documents.ErrUnknownCollection), errors.Is(err, documents.ErrUnknownApp):
		return wasm.InvalidDoc(err)
	}
	return err
}

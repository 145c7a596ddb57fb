package app

import (
	"context"
	"errors"

	"github.com/verge-edge/verge/crdt"
	"github.com/verge-edge/verge/internal/data"
	"github.com/verge-edge/verge/internal/runtime"
)

// Documents connects the runtime's document calls to a PoP's data service,
// translating its errors into ABI statuses. svc nil gives nil: functions then
// get StatusUnsupported.
func Documents(svc *data.Service) runtime.Documents {
	if svc == nil {
		return nil
	}
	return documents{svc}
}

type documents struct{ s *data.Service }

func (d documents) Get(app, coll, key string) ([]byte, bool, error) {
	doc, found, err := d.s.Get(app, coll, key)
	return doc, found, status(err)
}

func (d documents) Update(ctx context.Context, app, coll, key string, ops []crdt.Op) ([]byte, error) {
	doc, err := d.s.Update(ctx, app, coll, key, ops)
	return doc, status(err)
}

func (d documents) Delete(ctx context.Context, app, coll, key string) (bool, error) {
	found, err := d.s.Delete(ctx, app, coll, key)
	return found, status(err)
}

func (d documents) List(app, coll, after string, limit int) ([]string, string, error) {
	keys, next, err := d.s.List(app, coll, after, limit)
	return keys, next, status(err)
}

func status(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, data.ErrNotFound):
		return runtime.ErrDocNotFound
	case errors.Is(err, data.ErrTooLarge):
		return runtime.LimitDoc(err)
	case errors.Is(err, data.ErrInvalid), errors.Is(err, data.ErrUnknownCollection), errors.Is(err, data.ErrUnknownApp):
		return runtime.InvalidDoc(err)
	}
	return err
}

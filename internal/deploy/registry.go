package deploy

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/verge-edge/verge/internal/durable"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/verge-edge/verge/internal/bundle"
)

// Registry is the central PoP's durable record of every app and version:
// bundles as files (bundles/<id>) and the apps' state (apps.json), each
// written to a temporary file, fsynced and renamed into place, so that a
// crash (kill -9 mid-upload included) leaves either the old state or the
// new one, never half a version.
type Registry struct {
	dir string

	mu    sync.Mutex
	state registryState
}

type registryState struct {
	// Gen is the generation of the last assignment change; it only grows,
	// across restarts too, so a PoP can order what the centre sends it.
	Gen  uint64                `json:"gen"`
	Apps map[string]*AppRecord `json:"apps"`
}

// AppRecord is an app's versions and which one is current.
type AppRecord struct {
	Name string `json:"name"`
	// Current is the version every PoP serves outside a rollout; ""
	// when the app is not deployed (never, or undeployed).
	Current  string          `json:"current"`
	Versions []VersionRecord `json:"versions"` // in upload order
}

// VersionRecord is one uploaded version.
type VersionRecord struct {
	ID       string    `json:"id"`
	Uploaded time.Time `json:"uploaded"`
	Bytes    int       `json:"bytes"`
	// Deployed is when it last became current (zero: never).
	Deployed time.Time `json:"deployed,omitzero"`
	// Failed says why its last rollout was rolled back ("" if it was not).
	Failed string `json:"failed,omitempty"`
}

// OpenRegistry opens (or creates) the registry in dir. Temporary files left
// by a crash are removed: they were never acknowledged.
func OpenRegistry(dir string) (*Registry, error) {
	if err := os.MkdirAll(filepath.Join(dir, "bundles"), 0o755); err != nil {
		return nil, err
	}
	r := &Registry{dir: dir, state: registryState{Apps: map[string]*AppRecord{}}}
	for _, sub := range []string{dir, filepath.Join(dir, "bundles")} {
		entries, err := os.ReadDir(sub)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".tmp") {
				os.Remove(filepath.Join(sub, e.Name()))
			}
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "apps.json"))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		if err := json.Unmarshal(b, &r.state); err != nil {
			return nil, fmt.Errorf("%s: %w; the deploy state is damaged: restore it from a backup or move it away (every version must then be deployed again)", filepath.Join(dir, "apps.json"), err)
		}
		if r.state.Apps == nil {
			r.state.Apps = map[string]*AppRecord{}
		}
	}
	return r, nil
}

func (r *Registry) bundlePath(id string) string { return filepath.Join(r.dir, "bundles", id) }

// save writes the state; r.mu is held.
func (r *Registry) save() error {
	b, err := json.MarshalIndent(r.state, "", "  ")
	if err != nil {
		return err
	}
	return durable.WriteFile(filepath.Join(r.dir, "apps.json"), b, 0o644)
}

// Put stores a version of app, durably, unless it is there already.
func (r *Registry) Put(app, id string, b []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := r.state.Apps[app]
	if rec != nil {
		for _, v := range rec.Versions {
			if v.ID == id {
				return nil
			}
		}
	}
	if _, err := os.Stat(r.bundlePath(id)); err != nil {
		if err := durable.WriteFile(r.bundlePath(id), b, 0o644); err != nil {
			return err
		}
	}
	if rec == nil {
		rec = &AppRecord{Name: app}
		r.state.Apps[app] = rec
	}
	rec.Versions = append(rec.Versions, VersionRecord{ID: id, Uploaded: time.Now().UTC(), Bytes: len(b)})
	return r.save()
}

// Bundle returns a stored bundle.
func (r *Registry) Bundle(id string) ([]byte, error) {
	if !bundle.ValidID(id) {
		return nil, fmt.Errorf("%w: %q is not a version id", ErrNoVersion, id)
	}
	b, err := os.ReadFile(r.bundlePath(id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: no bundle %s", ErrNoVersion, id)
	}
	return b, err
}

// App returns a copy of an app's record.
func (r *Registry) App(app string) (AppRecord, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, ok := r.state.Apps[app]
	if !ok {
		return AppRecord{}, false
	}
	c := *rec
	c.Versions = append([]VersionRecord(nil), rec.Versions...)
	return c, true
}

// Apps returns every app's record, sorted by name.
func (r *Registry) Apps() []AppRecord {
	r.mu.Lock()
	names := make([]string, 0, len(r.state.Apps))
	for n := range r.state.Apps {
		names = append(names, n)
	}
	r.mu.Unlock()
	sort.Strings(names)
	out := make([]AppRecord, 0, len(names))
	for _, n := range names {
		if rec, ok := r.App(n); ok {
			out = append(out, rec)
		}
	}
	return out
}

// Resolve finds app's version by id or unique prefix.
func (r *Registry) Resolve(app, id string) (string, error) {
	rec, ok := r.App(app)
	if !ok {
		return "", fmt.Errorf("%w: no app %q has been deployed", ErrNoVersion, app)
	}
	found := ""
	for _, v := range rec.Versions {
		if id != "" && strings.HasPrefix(v.ID, id) {
			if found != "" && found != v.ID {
				return "", fmt.Errorf("%w: %q matches several versions of %s; give more of it", ErrNoVersion, id, app)
			}
			found = v.ID
		}
	}
	if found == "" {
		return "", fmt.Errorf("%w: app %s has no version %q (see verge versions %s)", ErrNoVersion, app, id, app)
	}
	return found, nil
}

// Update changes app's record with fn under the lock, bumps the
// generation and saves. fn returns an error to change nothing.
func (r *Registry) Update(app string, fn func(rec *AppRecord) error) (uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := r.state.Apps[app]
	if rec == nil {
		return 0, fmt.Errorf("%w: no app %q has been deployed", ErrNoVersion, app)
	}
	before := *rec
	before.Versions = append([]VersionRecord(nil), rec.Versions...)
	if err := fn(rec); err != nil {
		*rec = before
		return 0, err
	}
	r.state.Gen++
	if err := r.save(); err != nil {
		*rec = before
		r.state.Gen--
		return 0, err
	}
	return r.state.Gen, nil
}

// Gen is the generation of the last change; NextGen reserves a new one
// (for an assignment change that is not saved, a rollout's stage).
func (r *Registry) Gen() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state.Gen
}

// NextGen reserves the next generation durably.
func (r *Registry) NextGen() (uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.state.Gen++
	if err := r.save(); err != nil {
		r.state.Gen--
		return 0, err
	}
	return r.state.Gen, nil
}

// Previous returns the version that was current before rec.Current: the
// last deployed version other than it.
func (rec AppRecord) Previous() string {
	var best VersionRecord
	for _, v := range rec.Versions {
		if v.ID != rec.Current && !v.Deployed.IsZero() && v.Deployed.After(best.Deployed) {
			best = v
		}
	}
	return best.ID
}

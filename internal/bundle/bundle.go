// Package bundle packs an app into the unit Verge deploys: its manifest and
// its modules in one archive, named by the hash of its content, so that a
// version id says exactly which bytes run. A bundle is a POSIX tar stream
// written deterministically (sorted names, fixed modes and times), so packing
// the same files twice gives the same id, and any tar tool can list it.
//
// Bundles arrive from the network: Read refuses anything that is not one
// (bad archive, a name escaping the bundle, too many or too large files, a
// content hash that does not match) before a byte is written to disk.
package bundle

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/verge-edge/verge"
)

// Limits of a bundle.
const (
	MaxBytes = 128 << 20 // a whole bundle
	MaxFiles = 256
	// MetaFile holds deploy-time settings that are not the app's code
	// (Meta), so that the same code deployed another way is another version.
	MetaFile = "bundle.json"
)

// ErrInvalid is matched by every error about bytes that are not a valid
// bundle.
var ErrInvalid = errors.New("not a valid bundle")

// Meta are deploy-time settings carried in a bundle beside the manifest.
type Meta struct {
	// Placement overrides the manifest's placement ("" keeps it).
	Placement verge.Placement `json:"placement,omitempty"`
}

// ID is the version id of a bundle: the first 128 bits of its SHA-256, in
// hex. Equal bytes, equal id; any change, another id.
func ID(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// ValidID reports whether id has the shape of a version id.
func ValidID(id string) bool {
	if len(id) != 32 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil && strings.ToLower(id) == id
}

// Pack reads m's manifest file and modules (already built) and returns the
// bundle and its id. Modules must lie inside the manifest's directory.
func Pack(m *verge.Manifest, meta Meta) ([]byte, string, error) {
	files := map[string][]byte{}
	raw, err := os.ReadFile(m.Path)
	if err != nil {
		return nil, "", err
	}
	files[verge.ManifestFile] = raw
	for _, fn := range m.Functions {
		rel, err := filepath.Rel(m.Dir, fn.Module)
		if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
			return nil, "", fmt.Errorf("%s: function %q: module %s lies outside the app directory %s; a bundle carries only the app's own files", m.Path, fn.Name, fn.Module, m.Dir)
		}
		name := filepath.ToSlash(rel)
		if _, ok := files[name]; ok {
			continue
		}
		b, err := os.ReadFile(fn.Module)
		if err != nil {
			return nil, "", fmt.Errorf("%s: function %q: %w (is it built?)", m.Path, fn.Name, err)
		}
		files[name] = b
	}
	if meta != (Meta{}) {
		b, _ := json.Marshal(meta)
		files[MetaFile] = b
	}
	b, err := write(files)
	if err != nil {
		return nil, "", err
	}
	if len(b) > MaxBytes {
		return nil, "", fmt.Errorf("the bundle of %s is %d bytes, over the limit of %d", m.Name, len(b), MaxBytes)
	}
	return b, ID(b), nil
}

func write(files map[string][]byte) ([]byte, error) {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		hdr := &tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(files[n]); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Files are a bundle's contents by name.
type Files map[string][]byte

// Read checks b against id (when id is not "") and returns its files.
func Read(b []byte, id string) (Files, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
	}
	if len(b) > MaxBytes {
		return nil, bad("%d bytes, over the limit of %d", len(b), MaxBytes)
	}
	if id != "" && ID(b) != id {
		return nil, bad("its content hash is %s, not %s: truncated or altered on the way", ID(b), id)
	}
	// A tar stream ends with two zero blocks; without them it was cut off,
	// however well the entries before the cut parse.
	if len(b) < 1024 || !allZero(b[len(b)-1024:]) {
		return nil, bad("truncated: it does not end with a tar end-of-archive marker")
	}
	files := Files{}
	total := 0
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, bad("%v", err)
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil, bad("%q is not a regular file", hdr.Name)
		}
		if err := checkName(hdr.Name); err != nil {
			return nil, bad("%v", err)
		}
		if _, dup := files[hdr.Name]; dup {
			return nil, bad("%q appears twice", hdr.Name)
		}
		if len(files) == MaxFiles {
			return nil, bad("more than %d files", MaxFiles)
		}
		if hdr.Size < 0 || int64(total)+hdr.Size > int64(len(b)) {
			return nil, bad("%q claims %d bytes, more than the bundle holds", hdr.Name, hdr.Size)
		}
		data, err := io.ReadAll(io.LimitReader(tr, hdr.Size))
		if err != nil || int64(len(data)) != hdr.Size {
			return nil, bad("%q is truncated", hdr.Name)
		}
		total += len(data)
		files[hdr.Name] = data
	}
	if _, ok := files[verge.ManifestFile]; !ok {
		return nil, bad("it holds no %s", verge.ManifestFile)
	}
	return files, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// checkName refuses names that could escape the directory a bundle is
// written to, or that are not in the canonical form Pack writes.
func checkName(n string) error {
	if n == "" || strings.HasPrefix(n, "/") || strings.Contains(n, "\\") || path.Clean(n) != n || n == ".." || strings.HasPrefix(n, "../") || len(n) > 512 {
		return fmt.Errorf("file name %q is not a clean relative path", n)
	}
	return nil
}

// Meta returns the bundle's deploy-time settings.
func (f Files) Meta() (Meta, error) {
	var m Meta
	b, ok := f[MetaFile]
	if !ok {
		return m, nil
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("%w: %s: %v", ErrInvalid, MetaFile, err)
	}
	if m.Placement != "" {
		if _, err := verge.ParsePlacement(string(m.Placement)); err != nil {
			return m, fmt.Errorf("%w: %s: %v", ErrInvalid, MetaFile, err)
		}
	}
	return m, nil
}

// Unpack writes the files under dir (which must not exist yet, so a
// half-written directory is never taken for a whole one: write to a
// temporary name and rename) and parses the manifest there, applying the
// bundle's Meta. Errors in the manifest are the manifest's, naming the file
// inside dir.
func (f Files) Unpack(dir string) (*verge.Manifest, error) {
	meta, err := f.Meta()
	if err != nil {
		return nil, err
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	for name, data := range f {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return nil, err
		}
	}
	m, err := verge.ParseManifest(filepath.Join(dir, verge.ManifestFile), f[verge.ManifestFile])
	if err != nil {
		return nil, err
	}
	if meta.Placement != "" {
		m.Placement = meta.Placement
	}
	for i, fn := range m.Functions {
		rel, err := filepath.Rel(dir, fn.Module)
		if _, ok := f[filepath.ToSlash(rel)]; err != nil || !ok {
			return nil, &verge.ManifestError{File: m.Path, Field: fmt.Sprintf("function[%d].module", i),
				Msg: fmt.Sprintf("%s is not in the bundle (function %q); build it before deploying", rel, fn.Name)}
		}
	}
	return m, nil
}

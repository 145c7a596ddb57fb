// Package durable writes small files so that after a crash (kill -9, power
// loss) a reader finds either the old content or the new, never a torn mix,
// and the new content once the call returned.
package durable

import (
	"os"
	"path/filepath"
)

// WriteFile writes b to path durably: a temporary file beside it, fsync,
// rename over path, fsync of the directory (the rename is durable only
// then). A crash before the rename leaves path as it was and a stray
// path+".tmp" that the next WriteFile replaces.
func WriteFile(path string, b []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

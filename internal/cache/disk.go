package cache

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The disk tier keeps entries evicted from memory, one file each, within a
// byte budget, least recently used first out. Its index is in memory (the
// entries' metadata, rebuilt from the files' headers at Open); bodies are
// read back into memory on a hit. A file is:
//
//	"VRGC" | version (1 byte) | meta length (u32) | meta (JSON) | CRC-32C of meta
//	| body | CRC-32C of body
//
// Files are written under a temporary name and renamed, so a crash leaves
// either a whole file or a temporary one (removed at Open). Nothing is
// fsynced: losing a cache file costs one origin request, and the CRCs catch
// a torn or damaged file, which is removed and counted, never served.
const (
	diskMagic   = "VRGC"
	diskVersion = 1
	diskExt     = ".vc"
	diskTmpExt  = ".tmp"
	// maxMeta bounds a file's metadata: a header larger than this is not
	// from us.
	maxMeta = 1 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errCorrupt is a file that is not a whole, intact entry.
var errCorrupt = errors.New("cache: corrupt file")

type diskTier struct {
	c         *Cache
	dir       string
	budget    int64
	maxObject int64
	seq       atomic.Uint64
	// under c.mu:
	used         int64
	lru          list.List // entries with a file, most recently used first
	pendingBytes int64     // memory of the entries waiting to be written
	pending      int

	queue chan spillItem
	wg    sync.WaitGroup
	once  sync.Once
	// qmu guards sending on queue against closing it: a cache used after
	// Close drops what it would spill.
	qmu    sync.RWMutex
	closed bool
}

type diskFile struct {
	name string
	size int64
	elem *list.Element
}

// spillItem is an entry to write, with its body and metadata taken under
// the lock.
type spillItem struct {
	e    *entry
	body *body
	meta diskMeta
	cost int64 // counted in pendingBytes
}

// diskMeta is what a file records of its entry.
type diskMeta struct {
	App, Primary, Path   string
	VaryFields, VaryVals []string
	Status               int
	Header               http.Header
	Tags                 []string
	RespTime             time.Time
	InitialAge, Lifetime time.Duration
	SWR, SIE, PurgedAge  time.Duration
	MustRevalidate       bool
	NoCache, AuthOK      bool
	ETag, LastModified   string
	Size                 int64
}

func metaOf(e *entry) diskMeta {
	return diskMeta{App: e.app, Primary: e.primary, Path: e.path, VaryFields: e.varyFields, VaryVals: e.varyVals,
		Status: e.status, Header: e.header, Tags: e.tags, RespTime: e.respTime, InitialAge: e.initialAge,
		Lifetime: e.lifetime, SWR: e.swr, SIE: e.sie, PurgedAge: e.purgedAge, MustRevalidate: e.mustRevalidate,
		NoCache: e.noCache, AuthOK: e.authOK, ETag: e.etag, LastModified: e.lastModified, Size: e.size}
}

func (m diskMeta) entry() *entry {
	return &entry{app: m.App, primary: m.Primary, path: m.Path, varyFields: m.VaryFields, varyVals: m.VaryVals,
		status: m.Status, header: m.Header, tags: m.Tags, respTime: m.RespTime, initialAge: m.InitialAge,
		lifetime: m.Lifetime, swr: m.SWR, sie: m.SIE, purgedAge: m.PurgedAge, mustRevalidate: m.MustRevalidate,
		noCache: m.NoCache, authOK: m.AuthOK, etag: m.ETag, lastModified: m.LastModified, size: m.Size}
}

// openDisk indexes the files in dir into c.
func openDisk(c *Cache, dir string, budget int64) (*diskTier, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cache: disk tier: %w", err)
	}
	d := &diskTier{c: c, dir: dir, budget: budget, maxObject: min(c.opts.MaxObjectBytes, budget), queue: make(chan spillItem, 64)}
	type found struct {
		meta  diskMeta
		name  string
		size  int64
		mtime time.Time
	}
	var files []found
	err := filepath.WalkDir(dir, func(path string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		name := de.Name()
		switch {
		case strings.HasSuffix(name, diskTmpExt):
			os.Remove(path) // a write a crash interrupted
			return nil
		case !strings.HasSuffix(name, diskExt):
			return nil // not ours: leave it
		}
		meta, size, err := readMeta(path)
		if err != nil {
			c.stats.diskCorrupt.Add(1)
			c.opts.Logger.Warn("cache: removing a damaged disk entry", "file", path, "err", err)
			os.Remove(path)
			return nil
		}
		fi, err := de.Info()
		if err != nil {
			return nil
		}
		files = append(files, found{meta, path, size, fi.ModTime()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cache: disk tier: %w", err)
	}
	// Oldest first, so that the most recently written is the most recently
	// used, and a newer file of a variant replaces an older one.
	sort.Slice(files, func(i, j int) bool { return files[i].mtime.Before(files[j].mtime) })
	now := c.now()
	c.mu.Lock()
	c.disk = d // removeLocked and forgetLocked reach it while indexing
	for _, f := range files {
		e := f.meta.entry()
		if c.opts.StaleOnOpen && (e.purgedAge < 0 || e.age(now) < e.purgedAge) {
			e.purgedAge = e.age(now)
		}
		c.insertLocked(e, requestHeaderOf(e))
		e.disk = &diskFile{name: f.name, size: f.size}
		e.disk.elem = d.lru.PushFront(e)
		d.used += f.size
	}
	d.evictLocked()
	c.unlockTrashOnly()
	d.wg.Add(1)
	go d.writer()
	return d, nil
}

// unlockTrashOnly is unlock before the writer runs (nothing to spill yet).
func (c *Cache) unlockTrashOnly() {
	trash := c.trash
	c.trash = nil
	c.mu.Unlock()
	for _, p := range trash {
		os.Remove(p)
	}
}

// requestHeaderOf rebuilds the request fields an entry was selected by.
func requestHeaderOf(e *entry) http.Header {
	h := http.Header{}
	for i, f := range e.varyFields {
		if v := e.varyVals[i]; v != "\x00absent" {
			h[f] = []string{v}
		}
	}
	return h
}

// close writes the last items, then stops the writer.
func (d *diskTier) close(last []spillItem) {
	d.once.Do(func() {
		for _, it := range last {
			d.queue <- it
		}
		d.qmu.Lock()
		d.closed = true
		close(d.queue)
		d.qmu.Unlock()
		d.wg.Wait()
	})
}

// handle deletes files and queues writes decided under the lock. A write
// that does not fit the queue is dropped (the entry with it): eviction
// must never wait for the disk.
func (d *diskTier) handle(trash []string, spill []spillItem) {
	for _, p := range trash {
		os.Remove(p)
	}
	d.qmu.RLock()
	defer d.qmu.RUnlock()
	for i, it := range spill {
		if !d.closed {
			select {
			case d.queue <- it:
				continue
			default:
			}
		}
		c := d.c
		c.mu.Lock()
		for _, it := range spill[i:] {
			d.pendingBytes -= it.cost
			d.pending--
			if it.e.indexed && it.e.lru == nil && it.e.disk == nil {
				c.removeLocked(it.e)
			}
		}
		trash := c.trash
		c.trash = nil
		c.mu.Unlock()
		for _, p := range trash {
			os.Remove(p)
		}
		return
	}
}

// writer writes queued entries, one at a time.
func (d *diskTier) writer() {
	defer d.wg.Done()
	for it := range d.queue {
		name, size, err := d.write(it)
		c := d.c
		c.mu.Lock()
		if it.cost > 0 {
			d.pendingBytes -= it.cost
			d.pending--
		}
		e := it.e
		switch {
		case err != nil:
			c.opts.Logger.Warn("cache: writing to the disk tier", "err", err)
			if e.indexed && e.lru == nil && e.disk == nil {
				c.removeLocked(e)
			}
		case !e.indexed || e.disk != nil || e.purgedAge != it.meta.PurgedAge:
			// Purged (or purged softly, which the file does not say) while
			// it was written.
			c.trash = append(c.trash, name)
		default:
			c.stats.diskWrites.Add(1)
			e.disk = &diskFile{name: name, size: size}
			e.disk.elem = d.lru.PushFront(e)
			d.used += size
			if e.lru == nil {
				e.body = nil // memory holds it no more
			}
			d.evictLocked()
		}
		trash := c.trash
		c.trash = nil
		c.mu.Unlock()
		for _, p := range trash {
			os.Remove(p)
		}
	}
}

// evictLocked removes the least recently used files beyond the budget.
func (d *diskTier) evictLocked() {
	c := d.c
	for d.used > d.budget && d.lru.Len() > 0 {
		e := d.lru.Back().Value.(*entry)
		d.forgetLocked(e)
		if e.lru == nil {
			c.removeLocked(e) // no copy left
		}
	}
}

// forgetLocked drops e's file.
func (d *diskTier) forgetLocked(e *entry) {
	if e.disk == nil {
		return
	}
	d.lru.Remove(e.disk.elem)
	d.used -= e.disk.size
	d.c.trash = append(d.c.trash, e.disk.name)
	e.disk = nil
}

// fileName is where a variant's file goes: two levels of fan-out by the
// hash of its identity, and a sequence number so that a new copy never
// overwrites one being deleted.
func (d *diskTier) fileName(m *diskMeta) string {
	h := sha256.New()
	for _, s := range append([]string{m.App, m.Primary}, append(m.VaryFields, m.VaryVals...)...) {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	x := hex.EncodeToString(h.Sum(nil))[:32]
	return filepath.Join(d.dir, x[:2], x+"-"+strconv.FormatUint(d.seq.Add(1), 36)+diskExt)
}

// write stores an entry's file and returns its name and size.
func (d *diskTier) write(it spillItem) (string, int64, error) {
	meta, err := json.Marshal(it.meta)
	if err != nil {
		return "", 0, err
	}
	name := d.fileName(&it.meta)
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return "", 0, err
	}
	tmp := name + diskTmpExt
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return "", 0, err
	}
	var head [9]byte
	copy(head[:], diskMagic)
	head[4] = diskVersion
	binary.LittleEndian.PutUint32(head[5:], uint32(len(meta)))
	var crc [4]byte
	binary.LittleEndian.PutUint32(crc[:], crc32.Checksum(meta, castagnoli))
	bw := &crcWriter{w: f}
	_, err = f.Write(append(append(head[:], meta...), crc[:]...))
	if err == nil {
		var r *bodyReader
		if r, err = it.body.reader(context.Background()); err == nil {
			_, err = r.WriteTo(bw)
			r.Close()
		}
	}
	if err == nil {
		binary.LittleEndian.PutUint32(crc[:], bw.sum)
		_, err = f.Write(crc[:])
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err != nil {
		os.Remove(tmp)
		return "", 0, err
	}
	return name, int64(len(head)+len(meta)+8) + bw.n, nil
}

type crcWriter struct {
	w   io.Writer
	sum uint32
	n   int64
}

func (c *crcWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.sum = crc32.Update(c.sum, castagnoli, p[:n])
	c.n += int64(n)
	return n, err
}

// readMeta reads and checks a file's metadata and its size.
func readMeta(path string) (diskMeta, int64, error) {
	var m diskMeta
	f, err := os.Open(path)
	if err != nil {
		return m, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return m, 0, err
	}
	meta, err := readHead(f)
	if err != nil {
		return m, 0, err
	}
	if err := json.Unmarshal(meta, &m); err != nil {
		return m, 0, fmt.Errorf("%w: metadata: %v", errCorrupt, err)
	}
	if m.Size < 0 || fi.Size() != int64(9+len(meta)+8)+m.Size || m.Primary == "" || m.Status < 100 || m.Status > 999 ||
		len(m.VaryFields) != len(m.VaryVals) {
		return m, 0, fmt.Errorf("%w: size or fields", errCorrupt)
	}
	return m, fi.Size(), nil
}

// readHead reads the magic, version and metadata of a file and checks the
// metadata's CRC; it leaves r at the body.
func readHead(r io.Reader) ([]byte, error) {
	var head [9]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return nil, fmt.Errorf("%w: header: %v", errCorrupt, err)
	}
	if string(head[:4]) != diskMagic || head[4] != diskVersion {
		return nil, fmt.Errorf("%w: not a cache file of version %d", errCorrupt, diskVersion)
	}
	n := binary.LittleEndian.Uint32(head[5:])
	if n > maxMeta {
		return nil, fmt.Errorf("%w: metadata of %d bytes", errCorrupt, n)
	}
	buf := make([]byte, n+4)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, fmt.Errorf("%w: metadata: %v", errCorrupt, err)
	}
	if crc32.Checksum(buf[:n], castagnoli) != binary.LittleEndian.Uint32(buf[n:]) {
		return nil, fmt.Errorf("%w: metadata checksum", errCorrupt)
	}
	return buf[:n], nil
}

// readBody reads a file's body into chunks and checks its CRC.
func readBody(path string, size int64) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := readHead(f); err != nil {
		return nil, err
	}
	var chunks [][]byte
	var sum uint32
	for left := size; left > 0; {
		c := make([]byte, min(left, chunkSize))
		if _, err := io.ReadFull(f, c); err != nil {
			return nil, fmt.Errorf("%w: body: %v", errCorrupt, err)
		}
		sum = crc32.Update(sum, castagnoli, c)
		chunks = append(chunks, c)
		left -= int64(len(c))
	}
	var crc [4]byte
	if _, err := io.ReadFull(f, crc[:]); err != nil || binary.LittleEndian.Uint32(crc[:]) != sum {
		return nil, fmt.Errorf("%w: body checksum", errCorrupt)
	}
	return chunks, nil
}

// load brings e's body back into memory from its file; a damaged file is
// removed with its entry.
func (d *diskTier) load(e *entry) {
	c := d.c
	c.mu.Lock()
	df, size := e.disk, e.size
	c.unlock()
	if df == nil {
		return
	}
	chunks, err := readBody(df.name, size)
	c.mu.Lock()
	defer c.unlock()
	if err != nil {
		if errors.Is(err, errCorrupt) {
			c.stats.diskCorrupt.Add(1)
		}
		c.opts.Logger.Warn("cache: reading from the disk tier", "file", df.name, "err", err)
		if e.disk == df {
			c.removeLocked(e)
		}
		return
	}
	c.stats.diskReads.Add(1)
	if !e.indexed || e.body != nil || e.disk != df {
		return
	}
	e.body = newCompleteBody(chunks, size)
	d.lru.MoveToFront(df.elem)
	c.accountLocked(e)
}

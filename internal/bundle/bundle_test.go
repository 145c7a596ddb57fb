package bundle

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/verge-edge/verge"
)

const manifest = "name = \"a\"\n[[function]]\nname = \"f\"\nmodule = \"out/f.wasm\"\nexecutor = \"verge\"\nroutes = [\"/*\"]\n"

func app(t *testing.T, toml string) *verge.Manifest {
	t.Helper()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "out"), 0o755)
	os.WriteFile(filepath.Join(dir, "verge.toml"), []byte(toml), 0o644)
	os.WriteFile(filepath.Join(dir, "out", "f.wasm"), []byte("\x00asm\x01\x00\x00\x00"), 0o644)
	m, err := verge.LoadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestPackReadUnpack(t *testing.T) {
	t.Parallel()
	m := app(t, manifest)
	b, id, err := Pack(m, Meta{})
	if err != nil {
		t.Fatal(err)
	}
	b2, id2, _ := Pack(m, Meta{})
	if id != id2 || !bytes.Equal(b, b2) || !ValidID(id) {
		t.Fatalf("packing twice: ids %s and %s", id, id2)
	}
	if _, id3, _ := Pack(m, Meta{Placement: verge.PlacementCentral}); id3 == id {
		t.Fatal("another placement has the same id")
	}
	f, err := Read(b, id)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "v")
	got, err := f.Unpack(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "a" || got.Functions[0].Module != filepath.Join(dir, "out", "f.wasm") || got.Placement != verge.PlacementEdge {
		t.Fatalf("unpacked %+v", got)
	}
	if _, err := f.Unpack(dir); err == nil {
		t.Fatal("unpacking over an existing directory succeeded")
	}
	// Meta carries the placement.
	b, id, _ = Pack(m, Meta{Placement: verge.PlacementCentral})
	f, _ = Read(b, id)
	if got, err := f.Unpack(filepath.Join(t.TempDir(), "c")); err != nil || got.Placement != verge.PlacementCentral {
		t.Fatalf("placement from meta: %v %v", got, err)
	}
}

func tarOf(t *testing.T, entries ...[2]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		tw.WriteHeader(&tar.Header{Name: e[0], Mode: 0o644, Size: int64(len(e[1])), Typeflag: tar.TypeReg})
		tw.Write([]byte(e[1]))
	}
	tw.Close()
	return buf.Bytes()
}

func TestReadRefusesWhatIsNotABundle(t *testing.T) {
	t.Parallel()
	b, id, err := Pack(app(t, manifest), Meta{})
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		b    []byte
		id   string
		want string
	}{
		"garbage":        {[]byte("hello, world, not a tar archive at all................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................."), "", "not a valid bundle"},
		"truncated":      {b[:len(b)/2], id, "its content hash is"},
		"truncated, any": {b[:700], "", "truncated"},
		"other id":       {b, strings.Repeat("0", 32), "truncated or altered"},
		"no manifest":    {tarOf(t, [2]string{"f.wasm", "x"}), "", "holds no verge.toml"},
		"escape":         {tarOf(t, [2]string{"verge.toml", manifest}, [2]string{"../evil", "x"}), "", `"../evil" is not a clean relative path`},
		"absolute":       {tarOf(t, [2]string{"verge.toml", manifest}, [2]string{"/etc/evil", "x"}), "", `"/etc/evil" is not a clean relative path`},
		"unclean":        {tarOf(t, [2]string{"verge.toml", manifest}, [2]string{"out/./f", "x"}), "", "not a clean relative path"},
		"twice":          {tarOf(t, [2]string{"verge.toml", manifest}, [2]string{"verge.toml", manifest}), "", "appears twice"},
	} {
		_, err := Read(c.b, c.id)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrInvalid mentioning %q", name, err, c.want)
		}
	}
}

// A manifest naming a module the bundle lacks is refused when unpacked,
// naming the field.
func TestUnpackMissingModule(t *testing.T) {
	t.Parallel()
	f, err := Read(tarOf(t, [2]string{"verge.toml", manifest}), "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Unpack(filepath.Join(t.TempDir(), "v"))
	var me *verge.ManifestError
	if !errors.As(err, &me) || me.Field != "function[0].module" || !strings.Contains(err.Error(), "out/f.wasm is not in the bundle") {
		t.Fatalf("got %v", err)
	}
}

func TestPackRefusesModulesOutsideTheApp(t *testing.T) {
	t.Parallel()
	m := app(t, manifest)
	m.Functions[0].Module = "/etc/passwd"
	if _, _, err := Pack(m, Meta{}); err == nil || !strings.Contains(err.Error(), "outside the app directory") {
		t.Fatalf("got %v", err)
	}
}

package store

import (
	"context"
	"testing"
)

func TestWriteAndScan(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{Origin: "a.1"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Write([]Put{
		{Key: Key{"_rooms", "app/fn", "r1\x00a"}, Value: []byte("1")},
		{Key: Key{"_rooms", "app/fn", "r1\x00b"}, Value: []byte("2")},
		{Key: Key{"_rooms", "app/fn", "r2\x00a"}, Value: []byte("3")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if p, err = s.Write([]Put{{Key: Key{"_rooms", "app/fn", "r1\x00a"}}}); err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	var got []string
	if err := s.Scan("_rooms", "app/fn", "r1\x00", func(doc string, v []byte) bool {
		got = append(got, doc+"="+string(v))
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != "r1\x00b=2" {
		t.Fatalf("scan: %q", got)
	}
	if seqs := s.Seqs(); seqs["a.1"] != 0 {
		t.Fatalf("raw writes were logged: %v", seqs)
	}
	s.Close()
	s, err = Open(dir, Options{Origin: "a.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, ok, err := s.Get(Key{"_rooms", "app/fn", "r2\x00a"}); err != nil || !ok || string(v) != "3" {
		t.Fatalf("after reopen: %q %v %v", v, ok, err)
	}
	if p, err := s.Write(nil); err != nil || p.Wait(context.Background()) != nil {
		t.Fatal("empty write")
	}
}

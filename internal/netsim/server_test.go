package netsim

import (
	"io"
	"net"
	"sync"
	"testing"
)

// server is a loopback TCP server running handle on every accepted conn.
// closed receives once per accepted connection whose handler returned.
type server struct {
	ln     net.Listener
	addr   string
	closed chan struct{}

	mu    sync.Mutex
	conns []net.Conn
}

func startServer(t testing.TB, handle func(net.Conn, <-chan struct{})) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{ln: ln, addr: ln.Addr().String(), closed: make(chan struct{}, 1024)}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				handle(c, done)
				c.Close()
				s.closed <- struct{}{}
			}()
		}
	}()
	t.Cleanup(func() {
		close(done)
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		wg.Wait()
	})
	return s
}

func echo(c net.Conn, _ <-chan struct{}) { io.Copy(c, c) }

// sink reads everything and reports the byte count on EOF.
func sink(total chan<- int64) func(net.Conn, <-chan struct{}) {
	return func(c net.Conn, _ <-chan struct{}) {
		n, _ := io.Copy(io.Discard, c)
		total <- n
	}
}

// silent never reads until the test ends, so the sender's buffers fill up.
func silent(c net.Conn, done <-chan struct{}) { <-done }

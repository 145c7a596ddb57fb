package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/gorilla/websocket"
)

// The reference: a plain Go broadcast server on gorilla/websocket doing the
// chat's work without storage (a message from one connection of a room is
// sent to every connection of the room, sender included, in one order),
// the way such a hub is usually written: a goroutine reading each socket,
// a goroutine writing each, a mutex over the room, and each broadcast
// framed once (PreparedMessage). It runs as a child process (this binary
// re-executed) so that it competes with the clients for the cores exactly
// as `verge dev` does.

const childEnv = "VERGE_BENCH_ROOMS_REFERENCE"

type refConn struct {
	ws  *websocket.Conn
	out chan *websocket.PreparedMessage
}

type refRoom struct {
	mu    sync.Mutex
	conns map[*refConn]struct{}
}

func runReference() {
	var mu sync.Mutex
	rooms := map[string]*refRoom{}
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/chat/")
		mu.Lock()
		rm := rooms[name]
		if rm == nil {
			rm = &refRoom{conns: map[*refConn]struct{}{}}
			rooms[name] = rm
		}
		mu.Unlock()
		// In the room before the client sees its upgrade answered, as a
		// verge room's connection is (its connect event is queued first):
		// otherwise a broadcast right after the last dial can miss it.
		c := &refConn{out: make(chan *websocket.PreparedMessage, 4096)}
		rm.mu.Lock()
		rm.conns[c] = struct{}{}
		rm.mu.Unlock()
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			rm.mu.Lock()
			delete(rm.conns, c)
			rm.mu.Unlock()
			return
		}
		c.ws = ws
		go func() {
			for pm := range c.out {
				if ws.WritePreparedMessage(pm) != nil {
					ws.Close()
					for range c.out {
					}
					return
				}
			}
		}()
		for {
			mt, data, err := ws.ReadMessage()
			if err != nil {
				break
			}
			pm, _ := websocket.NewPreparedMessage(mt, data)
			rm.mu.Lock()
			for o := range rm.conns {
				select {
				case o.out <- pm:
				default: // a client that does not read: dropped, as a hub would
				}
			}
			rm.mu.Unlock()
		}
		rm.mu.Lock()
		delete(rm.conns, c)
		rm.mu.Unlock()
		close(c.out)
		ws.Close()
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("reference: serving http://%s\n", l.Addr())
	go func() {
		io.Copy(io.Discard, os.Stdin) // exit when the parent goes
		os.Exit(0)
	}()
	http.Serve(l, h)
}

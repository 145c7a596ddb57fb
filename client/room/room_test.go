package room

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestSendAcrossAReconnect: a server closes the first connection with
// 4001 while the client sends without pause; every message Send accepted
// reaches the server exactly once and in order, either on the first
// connection (read before the client answered the close) or on the second
// (queued while the client reconnected).
func TestSendAcrossAReconnect(t *testing.T) {
	var mu sync.Mutex
	var got []string
	conns := 0
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		conns++
		first := conns == 1
		mu.Unlock()
		if !first {
			// The client stays disconnected a while: what it sends
			// meanwhile is queued.
			time.Sleep(50 * time.Millisecond)
		}
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		for n := 0; ; n++ {
			ws.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, b, err := ws.ReadMessage()
			if err != nil {
				return
			}
			mu.Lock()
			got = append(got, string(b))
			mu.Unlock()
			if first && n == 5 {
				ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(CloseMoved, "moved"), time.Now().Add(time.Second))
			}
		}
	}))
	defer srv.Close()
	c, err := Dial(context.Background(), []string{"ws" + strings.TrimPrefix(srv.URL, "http")}, "/r", Options{MaxBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var want []string
	for i := 0; i < 200; i++ {
		m := fmt.Sprintf("m%03d", i)
		if err := c.SendText(m); err != nil {
			t.Fatalf("send %s: %v", m, err)
		}
		want = append(want, m)
		time.Sleep(500 * time.Microsecond) // the close comes while it sends
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(got, want) {
		t.Fatalf("the server got %d messages %v\nwant %d in order", len(got), got, len(want))
	}
	if codes := c.Codes(); !slices.Equal(codes, []int{CloseMoved}) || conns != 2 {
		t.Fatalf("close codes %v, connections %d: want one 4001 and a second connection", codes, conns)
	}
}

// TestSendRefusedWhenClosed: a closed client refuses what it is given.
func TestSendRefusedWhenClosed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	c, err := Dial(context.Background(), []string{"ws" + strings.TrimPrefix(srv.URL, "http")}, "/r", Options{})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := c.SendText("late"); err != ErrNotConnected {
		t.Fatalf("send after Close: %v, want ErrNotConnected", err)
	}
}

package verge

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Rooms: durable realtime actors (docs/rooms.md). A function with
// kind = "room" registers its event handlers with HandleRoom; Verge runs
// one live instance per room id in the whole network and calls the
// handlers one event at a time, so they need no locking, and globals of the
// instance are the room's own between events (until it hibernates: keep
// what must last in the room's storage).
//
//	verge.HandleRoom(verge.RoomHandler{
//		OnMessage: func(room *verge.Room, c verge.Conn, m verge.Message) {
//			room.Put("last", m.Data)            // durable before anything below leaves
//			room.Broadcast(m.Data, m.Binary)
//		},
//	})

// RoomHandler is a room function's handlers; each is optional.
type RoomHandler struct {
	// OnConnect: a client connected; req is its upgrade request.
	OnConnect func(room *Room, c Conn, req *Request)
	// OnMessage: a client sent a message.
	OnMessage func(room *Room, c Conn, m Message)
	// OnClose: a client's socket closed with code (1006: without a close frame).
	OnClose func(room *Room, c Conn, code int)
	// OnAlarm: the named alarm is due (it is no longer set; set it again to repeat).
	OnAlarm func(room *Room, name string)
	// OnRequest: a plain HTTP request to the room (/prefix/ROOM/...).
	OnRequest func(room *Room, w ResponseWriter, r *Request)
}

// Message is one WebSocket message.
type Message struct {
	Data   []byte
	Binary bool
}

// Text returns the message as a string.
func (m Message) Text() string { return string(m.Data) }

// Conn is one connection of the room.
type Conn struct{ ID uint32 }

// Room is the room whose event is running.
type Room struct{}

var (
	roomHandler RoomHandler
	theRoom     Room
)

// HandleRoom registers the room's handlers. Call it from an init function.
func HandleRoom(h RoomHandler) { roomHandler = h }

// ErrNoConnection: the connection is closed (or never was).
var ErrNoConnection = errors.New("verge: no such connection")

func roomErr(call string, st uint32) error {
	if st == statusOK {
		return nil
	}
	if st == statusNotFound && (call == "room_send" || call == "room_close" || call == "room_set_tags") {
		return fmt.Errorf("%w (%v)", ErrNoConnection, explained(call, st))
	}
	if st == statusNotFound {
		return ErrNotFound
	}
	return explained(call, st)
}

// ID is the room's id: the path segment after the function's route prefix.
func (*Room) ID() string {
	buf := make([]byte, 256)
	n, st := sysRoomID(buf)
	if st == statusTooSmall {
		buf = make([]byte, n)
		n, st = sysRoomID(buf)
	}
	if st != statusOK {
		return ""
	}
	return string(buf[:n])
}

// Send sends a text message (binary: a binary one) to the connection.
func (c Conn) Send(data []byte, binary bool) error {
	return roomErr("room_send", sysRoomSend(c.ID, data, binary))
}

// SendText sends a text message.
func (c Conn) SendText(s string) error { return c.Send([]byte(s), false) }

// Close closes the connection with code (1000, or 3000-4999) and reason.
func (c Conn) Close(code int, reason string) error {
	return roomErr("room_close", sysRoomClose(c.ID, code, reason))
}

// SetTags sets the connection's tags (at most 10): Broadcast and Conns can
// pick connections by tag.
func (c Conn) SetTags(tags ...string) error {
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(tags)))
	for _, t := range tags {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(t)))
		b = append(b, t...)
	}
	return roomErr("room_set_tags", sysRoomSetTags(c.ID, b))
}

// Broadcast sends a message to every connection of the room except those
// in exclude.
func (r *Room) Broadcast(data []byte, binary bool, exclude ...Conn) error {
	return r.BroadcastTagged("", data, binary, exclude...)
}

// BroadcastText broadcasts a text message.
func (r *Room) BroadcastText(s string, exclude ...Conn) error {
	return r.Broadcast([]byte(s), false, exclude...)
}

// BroadcastTagged sends a message to the connections with tag ("": all)
// except those in exclude.
func (*Room) BroadcastTagged(tag string, data []byte, binary bool, exclude ...Conn) error {
	ex := make([]byte, 0, 4*len(exclude))
	for _, c := range exclude {
		ex = binary2.AppendUint32(ex, c.ID)
	}
	return roomErr("room_broadcast", sysRoomBroadcast(data, binary, ex, uint32(len(exclude)), tag))
}

var binary2 = binary.LittleEndian

// ConnInfo is a connection and its tags.
type ConnInfo struct {
	Conn
	Tags []string
}

// Conns lists the room's connections (with tag; "": all).
func (*Room) Conns(tag string) ([]ConnInfo, error) {
	buf := make([]byte, 4096)
	for i := 0; i < 4; i++ {
		n, st := sysRoomConns(tag, buf)
		if st == statusTooSmall {
			buf = make([]byte, n)
			continue
		}
		if st != statusOK {
			return nil, roomErr("room_conns", st)
		}
		b := buf[:n]
		cnt, b, ok := u32(b)
		var out []ConnInfo
		for j := uint32(0); ok && j < cnt; j++ {
			var id, nt uint32
			if id, b, ok = u32(b); !ok {
				break
			}
			if nt, b, ok = u32(b); !ok {
				break
			}
			ci := ConnInfo{Conn: Conn{id}}
			for k := uint32(0); ok && k < nt; k++ {
				var t string
				if t, b, ok = str(b); ok {
					ci.Tags = append(ci.Tags, t)
				}
			}
			out = append(out, ci)
		}
		if !ok {
			return nil, errors.New("verge: room_conns: malformed answer")
		}
		return out, nil
	}
	return nil, errors.New("verge: room_conns: the list kept growing")
}

// Get reads a key of the room's storage; found is false if it is not set.
func (*Room) Get(key string) (value []byte, found bool, err error) {
	buf := make([]byte, 1024)
	for i := 0; i < 2; i++ {
		n, st := sysRoomGet(key, buf)
		switch st {
		case statusOK:
			return buf[:n], true, nil
		case statusTooSmall:
			buf = make([]byte, n)
			continue
		case statusNotFound:
			return nil, false, nil
		}
		return nil, false, roomErr("room_get", st)
	}
	return nil, false, errors.New("verge: room_get: the value changed size")
}

// Put writes a key of the room's storage. The room's later reads see it at
// once; it is durable (at this PoP and at the centre) before any message or
// response the room sends after it leaves.
func (*Room) Put(key string, value []byte) error {
	return roomErr("room_put", sysRoomPut(key, value))
}

// Delete removes a key of the room's storage.
func (*Room) Delete(key string) error { return roomErr("room_delete", sysRoomDelete(key)) }

// KV is a key and its value.
type KV struct {
	Key   string
	Value []byte
}

// List returns up to limit (1-1000) keys with prefix after `after`, in
// order, with their values, and the `after` of the next page ("": none).
func (*Room) List(prefix, after string, limit int) ([]KV, string, error) {
	buf := make([]byte, 16<<10)
	for i := 0; i < 2; i++ {
		n, st := sysRoomList(prefix, after, limit, buf)
		if st == statusTooSmall {
			buf = make([]byte, n)
			continue
		}
		if st != statusOK {
			return nil, "", roomErr("room_list", st)
		}
		b := buf[:n]
		cnt, b, ok := u32(b)
		out := make([]KV, 0, cnt)
		for j := uint32(0); ok && j < cnt; j++ {
			var k, v string
			if k, b, ok = str(b); !ok {
				break
			}
			if v, b, ok = str(b); ok {
				out = append(out, KV{k, []byte(v)})
			}
		}
		var next string
		if ok {
			next, _, ok = str(b)
		}
		if !ok {
			return nil, "", errors.New("verge: room_list: malformed answer")
		}
		return out, next, nil
	}
	return nil, "", errors.New("verge: room_list: the answer changed size")
}

// SetAlarm sets (or moves) the named alarm: OnAlarm runs at `at`, even if
// nobody is connected and every PoP restarted meanwhile. A room has up to
// 1,000 alarms.
func (*Room) SetAlarm(name string, at time.Time) error {
	return roomErr("room_alarm_set", sysRoomAlarmSet(name, at.UnixMilli()))
}

// CancelAlarm cancels the named alarm (ErrNotFound: none is set).
func (*Room) CancelAlarm(name string) error {
	return roomErr("room_alarm_cancel", sysRoomAlarmCancel(name))
}

// Alarms returns the room's alarms by name.
func (*Room) Alarms() (map[string]time.Time, error) {
	buf := make([]byte, 1024)
	for i := 0; i < 2; i++ {
		n, st := sysRoomAlarms(buf)
		if st == statusTooSmall {
			buf = make([]byte, n)
			continue
		}
		if st != statusOK {
			return nil, roomErr("room_alarms", st)
		}
		b := buf[:n]
		cnt, b, ok := u32(b)
		out := make(map[string]time.Time, cnt)
		for j := uint32(0); ok && j < cnt; j++ {
			var name string
			if name, b, ok = str(b); !ok || len(b) < 8 {
				ok = false
				break
			}
			out[name] = time.UnixMilli(int64(binary.LittleEndian.Uint64(b)))
			b = b[8:]
		}
		if !ok {
			return nil, errors.New("verge: room_alarms: malformed answer")
		}
		return out, nil
	}
	return nil, errors.New("verge: room_alarms: the answer changed size")
}

// ---- events (called by the exports) ----

// readEventBody reads the current event's payload (a message, an alarm's
// name): the body of handle 1.
func readEventBody() []byte {
	var out []byte
	buf := make([]byte, 4096)
	for {
		n, st := sysBodyRead(1, buf)
		if st != statusOK || n == 0 {
			return out
		}
		out = append(out, buf[:n]...)
		if int(n) == len(buf) && len(buf) < 1<<20 {
			buf = make([]byte, 2*len(buf))
		}
	}
}

func roomEvent(name string, fn func()) (rc uint32) {
	defer func() {
		if p := recover(); p != nil {
			Log(LevelError, fmt.Sprintf("room %s handler panicked: %v", name, p))
			rc = 2
		}
	}()
	fn()
	return 0
}

func roomConnect(conn uint32) uint32 {
	if roomHandler.OnConnect == nil {
		return 0
	}
	req, err := readRequest(1)
	if err != nil {
		return 1
	}
	return roomEvent("connect", func() { roomHandler.OnConnect(&theRoom, Conn{conn}, req) })
}

func roomMessage(conn, bin uint32) uint32 {
	if roomHandler.OnMessage == nil {
		return 0
	}
	data := readEventBody()
	return roomEvent("message", func() { roomHandler.OnMessage(&theRoom, Conn{conn}, Message{Data: data, Binary: bin != 0}) })
}

func roomClose(conn, code uint32) uint32 {
	if roomHandler.OnClose == nil {
		return 0
	}
	return roomEvent("close", func() { roomHandler.OnClose(&theRoom, Conn{conn}, int(code)) })
}

func roomAlarm() uint32 {
	if roomHandler.OnAlarm == nil {
		return 0
	}
	name := string(readEventBody())
	return roomEvent("alarm", func() { roomHandler.OnAlarm(&theRoom, name) })
}

func roomRequest(reqH, respH uint32) uint32 {
	req, err := readRequest(reqH)
	if err != nil {
		return 1
	}
	rw.reset(respH)
	rc := roomEvent("request", func() {
		if roomHandler.OnRequest == nil {
			rw.WriteHeader(404)
			rw.Write([]byte("this room serves no HTTP requests\n"))
			return
		}
		roomHandler.OnRequest(&theRoom, &rw, req)
	})
	if rc != 0 {
		return rc
	}
	if err := rw.finish(); err != nil {
		return 3
	}
	return 0
}

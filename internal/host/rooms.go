package host

import (
	"context"
	"encoding/binary"
	"errors"
	"time"

	"github.com/verge-edge/verge/internal/wasm"
)

// Room is what the room_* host calls reach: the room whose event is running
// (internal/rooms puts it in the event's context with WithRoom). Every call
// acts on that room alone. Storage writes are visible to the room's next
// reads at once and durable before anything the room does after them can
// be observed outside it (the output gate, docs/rooms.md); errors match the
// sentinels below (see status.go).
type Room interface {
	ID() string
	Send(conn uint32, data []byte, binary bool) error
	Broadcast(data []byte, binary bool, exclude []uint32, tag string) error
	Close(conn uint32, code int, reason string) error
	Conns(tag string) []RoomConn
	SetTags(conn uint32, tags []string) error
	Get(key string) ([]byte, bool, error)
	Put(key string, value []byte) error
	Delete(key string) error
	List(prefix, after string, limit int) (keys []string, values [][]byte, next string, err error)
	SetAlarm(name string, at time.Time) error
	CancelAlarm(name string) error
	Alarms() []RoomAlarm
}

// RoomConn is one connection of a room.
type RoomConn struct {
	ID   uint32
	Tags []string
}

// RoomAlarm is one named alarm of a room.
type RoomAlarm struct {
	Name string
	At   time.Time
}

// Sentinels of the rooms service, mapped in status.go.
var (
	// ErrNoConnection: the connection id names no open connection.
	ErrNoConnection = errors.New("rooms: no such connection")
	// ErrNoAlarm: no alarm of that name is set.
	ErrNoAlarm = errors.New("rooms: no such alarm")
	// ErrRoomInvalid: a bad key, value, code, tag or alarm.
	ErrRoomInvalid = errors.New("rooms: invalid argument")
	// ErrRoomLimit: a room limit (storage size, alarms, message size).
	ErrRoomLimit = errors.New("rooms: limit reached")
	// ErrNotOwner: the room moved away while the event ran; its effects are
	// discarded.
	ErrNotOwner = errors.New("rooms: this PoP no longer owns the room")
)

var errNoRoom = errorOf(ErrUnsupported, "room calls work only inside a room's event (kind = \"room\" functions)")

type roomKey struct{}

// WithRoom returns ctx carrying the room whose event is running.
func WithRoom(ctx context.Context, r Room) context.Context {
	return context.WithValue(ctx, roomKey{}, r)
}

func roomOf(ctx context.Context) Room {
	r, _ := ctx.Value(roomKey{}).(Room)
	return r
}

// inRoom adapts a room call: it runs only within an event of a room, and
// gets that room.
func inRoom(f func(ctx context.Context, c *wasm.Call, r Room, a []uint64) uint32) func(context.Context, *wasm.Call, []uint64) uint32 {
	return func(ctx context.Context, c *wasm.Call, a []uint64) uint32 {
		r := roomOf(ctx)
		if r == nil {
			return fail(c, errNoRoom)
		}
		return f(ctx, c, r, a)
	}
}

// result is OK for nil, else err's status with err as the last error.
func result(c *wasm.Call, err error) uint32 {
	if err == nil {
		return wasm.StatusOK
	}
	return fail(c, err)
}

func roomsCapability() wasm.Capability {
	return wasm.Capability{Name: "rooms", Functions: []wasm.HostFunction{
		{Name: "room_id", Params: wasm.I32s(3), Call: inRoom(roomID)},
		{Name: "room_send", Params: wasm.I32s(4), Call: inRoom(roomSend)},
		{Name: "room_broadcast", Params: wasm.I32s(7), Call: inRoom(roomBroadcast)},
		{Name: "room_close", Params: wasm.I32s(4), Call: inRoom(roomClose)},
		{Name: "room_conns", Params: wasm.I32s(5), Call: inRoom(roomConns)},
		{Name: "room_set_tags", Params: wasm.I32s(3), Call: inRoom(roomSetTags)},
		{Name: "room_get", Params: wasm.I32s(5), Call: inRoom(roomGet)},
		{Name: "room_put", Params: wasm.I32s(4), Call: inRoom(roomPut)},
		{Name: "room_delete", Params: wasm.I32s(2), Call: inRoom(roomDelete)},
		{Name: "room_list", Params: wasm.I32s(8), Call: inRoom(roomList)},
		{Name: "room_alarm_set", Params: wasm.Params(wasm.I32, wasm.I32, wasm.I64), Call: inRoom(roomAlarmSet)},
		{Name: "room_alarm_cancel", Params: wasm.I32s(2), Call: inRoom(roomAlarmCancel)},
		{Name: "room_alarms", Params: wasm.I32s(3), Call: inRoom(roomAlarms)},
	}}
}

// room_id(buf, cap, len_out): the room's id.
func roomID(ctx context.Context, c *wasm.Call, r Room, a []uint64) uint32 {
	return c.Out([]byte(r.ID()), uint32(a[0]), uint32(a[1]), uint32(a[2]))
}

// room_send(conn, ptr, len, binary)
func roomSend(ctx context.Context, c *wasm.Call, r Room, a []uint64) uint32 {
	b, ok := c.Bytes(uint32(a[1]), uint32(a[2]))
	if !ok {
		return wasm.StatusMemory
	}
	return result(c, r.Send(uint32(a[0]), b, uint32(a[3]) != 0))
}

// room_broadcast(ptr, len, binary, exclude_ptr, exclude_count, tag_ptr, tag_len)
func roomBroadcast(ctx context.Context, c *wasm.Call, r Room, a []uint64) uint32 {
	b, ok1 := c.Bytes(uint32(a[0]), uint32(a[1]))
	n := uint32(a[4])
	if n > 1<<20 {
		return c.Refuse(wasm.StatusInvalid, "exclude list of %d connections", n)
	}
	ex, ok2 := c.Bytes(uint32(a[3]), n*4)
	tag, ok3 := c.Bytes(uint32(a[5]), uint32(a[6]))
	if !ok1 || !ok2 || !ok3 {
		return wasm.StatusMemory
	}
	exclude := make([]uint32, n)
	for i := range exclude {
		exclude[i] = binary.LittleEndian.Uint32(ex[4*i:])
	}
	return result(c, r.Broadcast(b, uint32(a[2]) != 0, exclude, string(tag)))
}

// room_close(conn, code, reason_ptr, reason_len)
func roomClose(ctx context.Context, c *wasm.Call, r Room, a []uint64) uint32 {
	reason, ok := c.Bytes(uint32(a[2]), uint32(a[3]))
	if !ok {
		return wasm.StatusMemory
	}
	return result(c, r.Close(uint32(a[0]), int(uint32(a[1])), string(reason)))
}

// room_conns(tag_ptr, tag_len, buf, cap, len_out): u32 count, then per
// connection u32 id and a string list of its tags.
func roomConns(ctx context.Context, c *wasm.Call, r Room, a []uint64) uint32 {
	tag, ok := c.Bytes(uint32(a[0]), uint32(a[1]))
	if !ok || !c.OutBuf(uint32(a[2]), uint32(a[3]), uint32(a[4])) {
		return wasm.StatusMemory
	}
	conns := r.Conns(string(tag))
	out := binary.LittleEndian.AppendUint32(nil, uint32(len(conns)))
	for _, cn := range conns {
		out = binary.LittleEndian.AppendUint32(out, cn.ID)
		out = appendStrings(out, cn.Tags)
	}
	return c.Out(out, uint32(a[2]), uint32(a[3]), uint32(a[4]))
}

func appendStrings(out []byte, ss []string) []byte {
	out = binary.LittleEndian.AppendUint32(out, uint32(len(ss)))
	for _, s := range ss {
		out = wasm.AppendString(out, s)
	}
	return out
}

// decodeStrings reads a u32 count and that many strings.
func decodeStrings(b []byte) ([]string, bool) {
	if len(b) < 4 {
		return nil, len(b) == 0
	}
	n := binary.LittleEndian.Uint32(b)
	b = b[4:]
	if uint64(n)*4 > uint64(len(b)) {
		return nil, false
	}
	out := make([]string, 0, n)
	for i := uint32(0); i < n; i++ {
		if len(b) < 4 {
			return nil, false
		}
		l := binary.LittleEndian.Uint32(b)
		if uint64(l) > uint64(len(b)-4) {
			return nil, false
		}
		out = append(out, string(b[4:4+l]))
		b = b[4+l:]
	}
	return out, len(b) == 0
}

// room_set_tags(conn, ptr, len): the connection's tags, a string list.
func roomSetTags(ctx context.Context, c *wasm.Call, r Room, a []uint64) uint32 {
	b, ok := c.Bytes(uint32(a[1]), uint32(a[2]))
	if !ok {
		return wasm.StatusMemory
	}
	tags, ok := decodeStrings(b)
	if !ok {
		return c.Refuse(wasm.StatusInvalid, "tags must be a u32 count followed by that many strings")
	}
	return result(c, r.SetTags(uint32(a[0]), tags))
}

// room_get(key, key_len, buf, cap, len_out)
func roomGet(ctx context.Context, c *wasm.Call, r Room, a []uint64) uint32 {
	k, ok := c.Bytes(uint32(a[0]), uint32(a[1]))
	if !ok || !c.OutBuf(uint32(a[2]), uint32(a[3]), uint32(a[4])) {
		return wasm.StatusMemory
	}
	v, found, err := r.Get(string(k))
	if err != nil {
		return fail(c, err)
	}
	if !found {
		return wasm.StatusNotFound
	}
	return c.Out(v, uint32(a[2]), uint32(a[3]), uint32(a[4]))
}

// room_put(key, key_len, value, value_len)
func roomPut(ctx context.Context, c *wasm.Call, r Room, a []uint64) uint32 {
	k, ok1 := c.Bytes(uint32(a[0]), uint32(a[1]))
	v, ok2 := c.Bytes(uint32(a[2]), uint32(a[3]))
	if !ok1 || !ok2 {
		return wasm.StatusMemory
	}
	return result(c, r.Put(string(k), append([]byte{}, v...)))
}

// room_delete(key, key_len)
func roomDelete(ctx context.Context, c *wasm.Call, r Room, a []uint64) uint32 {
	k, ok := c.Bytes(uint32(a[0]), uint32(a[1]))
	if !ok {
		return wasm.StatusMemory
	}
	return result(c, r.Delete(string(k)))
}

// room_list(prefix, prefix_len, after, after_len, limit, buf, cap, len_out):
// u32 count, that many (key, value) string pairs, then the next page's
// `after` ("" at the end).
func roomList(ctx context.Context, c *wasm.Call, r Room, a []uint64) uint32 {
	prefix, ok1 := c.Bytes(uint32(a[0]), uint32(a[1]))
	after, ok2 := c.Bytes(uint32(a[2]), uint32(a[3]))
	if !ok1 || !ok2 || !c.OutBuf(uint32(a[5]), uint32(a[6]), uint32(a[7])) {
		return wasm.StatusMemory
	}
	limit := int(uint32(a[4]))
	if limit < 1 || limit > 1000 {
		return c.Refuse(wasm.StatusInvalid, "limit %d: expected 1 to 1000", limit)
	}
	keys, values, next, err := r.List(string(prefix), string(after), limit)
	if err != nil {
		return fail(c, err)
	}
	out := binary.LittleEndian.AppendUint32(nil, uint32(len(keys)))
	for i, k := range keys {
		out = wasm.AppendString(out, k)
		out = binary.LittleEndian.AppendUint32(out, uint32(len(values[i])))
		out = append(out, values[i]...)
	}
	out = wasm.AppendString(out, next)
	return c.Out(out, uint32(a[5]), uint32(a[6]), uint32(a[7]))
}

// room_alarm_set(name, name_len, at_ms: i64): the alarm fires at at_ms
// (Unix milliseconds; in the past: at once). Setting it again moves it.
func roomAlarmSet(ctx context.Context, c *wasm.Call, r Room, a []uint64) uint32 {
	name, ok := c.Bytes(uint32(a[0]), uint32(a[1]))
	if !ok {
		return wasm.StatusMemory
	}
	return result(c, r.SetAlarm(string(name), time.UnixMilli(int64(a[2]))))
}

// room_alarm_cancel(name, name_len): NOT_FOUND if no such alarm is set.
func roomAlarmCancel(ctx context.Context, c *wasm.Call, r Room, a []uint64) uint32 {
	name, ok := c.Bytes(uint32(a[0]), uint32(a[1]))
	if !ok {
		return wasm.StatusMemory
	}
	return result(c, r.CancelAlarm(string(name)))
}

// room_alarms(buf, cap, len_out): u32 count, then per alarm its name and
// its time as u64 Unix milliseconds.
func roomAlarms(ctx context.Context, c *wasm.Call, r Room, a []uint64) uint32 {
	if !c.OutBuf(uint32(a[0]), uint32(a[1]), uint32(a[2])) {
		return wasm.StatusMemory
	}
	al := r.Alarms()
	out := binary.LittleEndian.AppendUint32(nil, uint32(len(al)))
	for _, x := range al {
		out = wasm.AppendString(out, x.Name)
		out = binary.LittleEndian.AppendUint64(out, uint64(x.At.UnixMilli()))
	}
	return c.Out(out, uint32(a[0]), uint32(a[1]), uint32(a[2]))
}

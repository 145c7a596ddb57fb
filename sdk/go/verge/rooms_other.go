//go:build !wasip1

package verge

// RoomHost is the part of the host ABI that reaches a room. A fake Host
// implements it to test room handlers natively (with RoomConnect,
// RoomMessage, ...); without it, room calls report StatusUnsupported.
type RoomHost interface {
	RoomID(buf []byte) (n uint32, status uint32)
	RoomSend(conn uint32, data []byte, binary bool) uint32
	RoomBroadcast(data []byte, binary bool, exclude []uint32, tag string) uint32
	RoomClose(conn uint32, code int, reason string) uint32
	RoomConns(tag string, buf []byte) (n uint32, status uint32)
	RoomSetTags(conn uint32, tags []byte) uint32
	RoomGet(key string, buf []byte) (n uint32, status uint32)
	RoomPut(key string, value []byte) uint32
	RoomDelete(key string) uint32
	RoomList(prefix, after string, limit int, buf []byte) (n uint32, status uint32)
	RoomAlarmSet(name string, atMillis int64) uint32
	RoomAlarmCancel(name string) uint32
	RoomAlarms(buf []byte) (n uint32, status uint32)
}

func roomHost() RoomHost {
	if r, ok := host.(RoomHost); ok {
		return r
	}
	return nil
}

// RoomConnect, RoomMessage, RoomClose, RoomAlarm and RoomRequest run the
// registered room handlers as the Wasm exports do, through the fake host.
func RoomConnect(conn uint32) uint32              { return roomConnect(conn) }
func RoomMessage(conn uint32, binary bool) uint32 { return roomMessage(conn, b32(binary)) }
func RoomClose(conn uint32, code int) uint32      { return roomClose(conn, uint32(code)) }
func RoomAlarm() uint32                           { return roomAlarm() }
func RoomRequest(req, resp uint32) uint32         { return roomRequest(req, resp) }

func b32(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

func sysRoomID(buf []byte) (uint32, uint32) {
	if r := roomHost(); r != nil {
		return r.RoomID(buf)
	}
	return 0, statusUnsupported
}

func sysRoomSend(conn uint32, data []byte, binary bool) uint32 {
	if r := roomHost(); r != nil {
		return r.RoomSend(conn, data, binary)
	}
	return statusUnsupported
}

func sysRoomBroadcast(data []byte, binary bool, ex []byte, exN uint32, tag string) uint32 {
	if r := roomHost(); r != nil {
		ids := make([]uint32, exN)
		for i := range ids {
			ids[i] = binary2.Uint32(ex[4*i:])
		}
		return r.RoomBroadcast(data, binary, ids, tag)
	}
	return statusUnsupported
}

func sysRoomClose(conn uint32, code int, reason string) uint32 {
	if r := roomHost(); r != nil {
		return r.RoomClose(conn, code, reason)
	}
	return statusUnsupported
}

func sysRoomConns(tag string, buf []byte) (uint32, uint32) {
	if r := roomHost(); r != nil {
		return r.RoomConns(tag, buf)
	}
	return 0, statusUnsupported
}

func sysRoomSetTags(conn uint32, b []byte) uint32 {
	if r := roomHost(); r != nil {
		return r.RoomSetTags(conn, b)
	}
	return statusUnsupported
}

func sysRoomGet(key string, buf []byte) (uint32, uint32) {
	if r := roomHost(); r != nil {
		return r.RoomGet(key, buf)
	}
	return 0, statusUnsupported
}

func sysRoomPut(key string, v []byte) uint32 {
	if r := roomHost(); r != nil {
		return r.RoomPut(key, v)
	}
	return statusUnsupported
}

func sysRoomDelete(key string) uint32 {
	if r := roomHost(); r != nil {
		return r.RoomDelete(key)
	}
	return statusUnsupported
}

func sysRoomList(prefix, after string, limit int, buf []byte) (uint32, uint32) {
	if r := roomHost(); r != nil {
		return r.RoomList(prefix, after, limit, buf)
	}
	return 0, statusUnsupported
}

func sysRoomAlarmSet(name string, at int64) uint32 {
	if r := roomHost(); r != nil {
		return r.RoomAlarmSet(name, at)
	}
	return statusUnsupported
}

func sysRoomAlarmCancel(name string) uint32 {
	if r := roomHost(); r != nil {
		return r.RoomAlarmCancel(name)
	}
	return statusUnsupported
}

func sysRoomAlarms(buf []byte) (uint32, uint32) {
	if r := roomHost(); r != nil {
		return r.RoomAlarms(buf)
	}
	return 0, statusUnsupported
}

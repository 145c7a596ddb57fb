//go:build !wasip1

package verge

// FetchHost is the part of the host ABI that makes outbound fetches. A fake
// Host implements it to test code using Fetch natively; without it, fetches
// report StatusUnsupported.
type FetchHost interface {
	FetchOpen(backend string, head []byte, flags uint32) (h uint32, status uint32)
	FetchBodyWrite(h uint32, b []byte) uint32
	FetchBodyClose(h uint32) uint32
	FetchHead(h uint32, buf []byte) (n uint32, status uint32)
	FetchBodyRead(h uint32, buf []byte) (n uint32, status uint32)
	FetchClose(h uint32) uint32
}

func fetcher() FetchHost {
	if f, ok := host.(FetchHost); ok {
		return f
	}
	return noFetch{}
}

type noFetch struct{}

func (noFetch) FetchOpen(string, []byte, uint32) (uint32, uint32) { return 0, statusUnsupported }
func (noFetch) FetchBodyWrite(uint32, []byte) uint32              { return statusUnsupported }
func (noFetch) FetchBodyClose(uint32) uint32                      { return statusUnsupported }
func (noFetch) FetchHead(uint32, []byte) (uint32, uint32)         { return 0, statusUnsupported }
func (noFetch) FetchBodyRead(uint32, []byte) (uint32, uint32)     { return 0, statusUnsupported }
func (noFetch) FetchClose(uint32) uint32                          { return statusUnsupported }

func sysFetchOpen(backend string, head []byte, flags uint32) (uint32, uint32) {
	return fetcher().FetchOpen(backend, head, flags)
}
func sysFetchBodyWrite(h uint32, b []byte) uint32 { return fetcher().FetchBodyWrite(h, b) }
func sysFetchBodyClose(h uint32) uint32           { return fetcher().FetchBodyClose(h) }
func sysFetchHead(h uint32, buf []byte) (uint32, uint32) {
	return fetcher().FetchHead(h, buf)
}
func sysFetchBodyRead(h uint32, buf []byte) (uint32, uint32) {
	return fetcher().FetchBodyRead(h, buf)
}
func sysFetchClose(h uint32) uint32 { return fetcher().FetchClose(h) }

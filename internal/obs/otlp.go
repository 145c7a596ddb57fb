package obs

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	instr "go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/encoding/protowire"
)

// otlpProcessor batches ended spans and exports them over OTLP/HTTP with
// protobuf, as the SDK's batch span processor and OTLP/HTTP exporter do
// together, for a fraction of their CPU: each span is encoded straight
// into OTLP's wire format when it ends (no snapshot of the span, no
// intermediate protobuf structs, no reflection), and a batch is one
// buffer, sent as it is. With every request traced, the SDK's pair cost
// hello-go more than its guest did (docs/observability.md#cost).
//
// What it sends is byte for byte an ExportTraceServiceRequest; the test
// decodes it with OTLP's generated types and compares it with what the
// SDK's exporter sends for the same spans. It honours the OTEL_BSP_*
// batching variables and the OTLP exporter's endpoint, headers, timeout and
// compression; SetupTracing falls back to the SDK's pair for what it does
// not do (TLS client certificates, another protocol).
type otlpProcessor struct {
	url      string
	headers  http.Header
	gzip     bool
	timeout  time.Duration // of one export
	client   *http.Client
	resource []byte // field 1 of ResourceSpans, encoded once
	schema   string // the resource's schema URL

	maxQueue, maxBatch int
	delay              time.Duration

	mu       sync.Mutex
	cur      *otlpBatch
	queued   int  // spans ended and not yet exported (cur's and full's)
	stopped  bool // by Shutdown: spans ending later are not exported
	full     chan *otlpBatch
	flush    chan chan struct{}
	done     chan struct{}
	dropped  atomic.Int64 // spans not exported because the queue was full
	reported int64        // of dropped, told to otel's error handler (run's)

	scratch sync.Pool // *[]byte, a span's encoding
	buffers sync.Pool // *[]byte, a batch's spans of one scope
	body    []byte    // the last export's request, for the next (run's alone)
}

// spansBuffer is an empty buffer for a batch's spans of one scope.
func (p *otlpProcessor) spansBuffer() []byte {
	if bp, ok := p.buffers.Get().(*[]byte); ok {
		return *bp
	}
	return make([]byte, 0, p.maxBatch*256)
}

// otlpBatch is the spans of one export, encoded, by instrumentation scope
// (Verge's spans all have one; a library's own tracer would add one).
type otlpBatch struct {
	n      int
	scopes []otlpScope
}

type otlpScope struct {
	scope instr.Scope
	spans []byte // each a ScopeSpans.spans field (tag 2), ready to send
}

// bspEnv reads a batching variable in milliseconds or a count; a value
// that is missing or not a positive number keeps def.
func bspEnv(name string, def int) int {
	if v, err := strconv.Atoi(strings.TrimSpace(os.Getenv(name))); err == nil && v > 0 {
		return v
	}
	return def
}

// otlpEnv is an OTLP exporter variable, the traces-specific one first.
func otlpEnv(suffix string) string {
	if v := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_" + suffix); v != "" {
		return v
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_" + suffix)
}

// fastExportable reports whether the environment asks for nothing the
// processor does not do: then it replaces the SDK's processor and exporter.
// VERGE_OTLP_EXPORTER=sdk asks for the SDK's pair regardless.
func fastExportable() bool {
	if os.Getenv("VERGE_OTLP_EXPORTER") == "sdk" {
		return false
	}
	if p := otlpEnv("PROTOCOL"); p != "" && p != "http/protobuf" {
		return false
	}
	for _, s := range []string{"CERTIFICATE", "CLIENT_CERTIFICATE", "CLIENT_KEY"} {
		if otlpEnv(s) != "" {
			return false
		}
	}
	return true
}

// tracesURL is where spans go: the traces endpoint as given, or the
// general endpoint (the environment's, else the config's) with /v1/traces,
// else OTLP's default.
func tracesURL(configured string) string {
	if v := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"); v != "" {
		return v
	}
	base := os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT")
	if base == "" {
		base = configured
	}
	if base == "" {
		base = "http://localhost:4318"
	}
	return strings.TrimRight(base, "/") + "/v1/traces"
}

// otlpHeaders parses OTEL_EXPORTER_OTLP_(TRACES_)HEADERS: key=value pairs
// separated by commas, values URL-encoded.
func otlpHeaders() http.Header {
	h := http.Header{}
	for _, pair := range strings.Split(otlpEnv("HEADERS"), ",") {
		k, v, ok := strings.Cut(pair, "=")
		if !ok || strings.TrimSpace(k) == "" {
			continue
		}
		if dv, err := url.PathUnescape(strings.TrimSpace(v)); err == nil {
			v = dv
		}
		h.Set(strings.TrimSpace(k), v)
	}
	return h
}

// defaultQueue is the spans that may wait for an export when
// OTEL_BSP_MAX_QUEUE_SIZE does not say: four times the SDK's 2048, since a
// queued span here is its encoding (about 200 bytes for a request's span)
// rather than a snapshot with its attribute slices. 2048 spans are 0.4 s
// of fully traced hello-go, little slack for an exporter goroutine
// starved by a loaded machine (RATIONALE.md).
const defaultQueue = 8192

func newOTLPProcessor(endpoint string, res *resource.Resource) (*otlpProcessor, error) {
	u := tracesURL(endpoint)
	if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
		return nil, fmt.Errorf("tracing: the OTLP endpoint %q is not an http(s) URL", u)
	}
	p := &otlpProcessor{
		url:      u,
		headers:  otlpHeaders(),
		gzip:     otlpEnv("COMPRESSION") == "gzip",
		timeout:  time.Duration(bspEnv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", bspEnv("OTEL_EXPORTER_OTLP_TIMEOUT", 10000))) * time.Millisecond,
		client:   &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()},
		maxQueue: bspEnv("OTEL_BSP_MAX_QUEUE_SIZE", defaultQueue),
		maxBatch: bspEnv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512),
		delay:    time.Duration(bspEnv("OTEL_BSP_SCHEDULE_DELAY", 5000)) * time.Millisecond,
		flush:    make(chan chan struct{}),
		done:     make(chan struct{}),
		cur:      &otlpBatch{},
	}
	if t := bspEnv("OTEL_BSP_EXPORT_TIMEOUT", 0); t > 0 && time.Duration(t)*time.Millisecond < p.timeout {
		p.timeout = time.Duration(t) * time.Millisecond
	}
	p.maxBatch = min(p.maxBatch, p.maxQueue)
	// A full batch waits in full until the exporter takes it; the queue
	// bound keeps their number below this, so handing one over never
	// blocks a request.
	p.full = make(chan *otlpBatch, p.maxQueue/p.maxBatch+2)
	if res != nil {
		p.resource = appendResource(nil, res)
		p.schema = res.SchemaURL()
	}
	p.scratch.New = func() any { b := make([]byte, 0, 512); return &b }
	go p.run()
	return p, nil
}

func (p *otlpProcessor) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

// OnEnd encodes an SDK span and adds it to the batch being filled (see
// enqueue).
func (p *otlpProcessor) OnEnd(s sdktrace.ReadOnlySpan) {
	if !s.SpanContext().IsSampled() {
		return
	}
	d := spanData{sc: s.SpanContext(), parent: s.Parent(), name: s.Name(), kind: s.SpanKind(),
		start: s.StartTime(), end: s.EndTime(), attrs: s.Attributes(), droppedAttrs: s.DroppedAttributes(),
		events: s.Events(), droppedEvents: s.DroppedEvents(), links: s.Links(), droppedLinks: s.DroppedLinks(), status: s.Status()}
	p.enqueue(s.InstrumentationScope(), &d)
}

// enqueue encodes an ended span and adds it to the batch being filled; a
// full batch goes to the exporter. When the exporter is behind by the
// queue's size, the span is dropped, as the SDK's processor drops it.
func (p *otlpProcessor) enqueue(scope instr.Scope, d *spanData) {
	bp := p.scratch.Get().(*[]byte)
	enc := appendSpan((*bp)[:0], d)
	p.mu.Lock()
	if p.stopped || p.queued >= p.maxQueue {
		p.mu.Unlock()
		if !p.stopped {
			p.dropped.Add(1)
		}
		*bp = enc
		p.scratch.Put(bp)
		return
	}
	b := p.cur
	i := 0
	for i < len(b.scopes) && b.scopes[i].scope != scope {
		i++
	}
	if i == len(b.scopes) {
		b.scopes = append(b.scopes, otlpScope{scope: scope, spans: p.spansBuffer()})
	}
	sc := &b.scopes[i]
	sc.spans = protowire.AppendTag(sc.spans, 2, protowire.BytesType)
	sc.spans = protowire.AppendBytes(sc.spans, enc)
	b.n++
	p.queued++
	if b.n >= p.maxBatch {
		p.cur = &otlpBatch{}
		p.full <- b // never blocks: see newOTLPProcessor
	}
	p.mu.Unlock()
	*bp = enc
	p.scratch.Put(bp)
}

// run exports full batches as they come, and the batch being filled every
// schedule delay or when asked to flush.
func (p *otlpProcessor) run() {
	t := time.NewTicker(p.delay)
	defer t.Stop()
	for {
		select {
		case b := <-p.full:
			p.export(b)
		case <-t.C:
			p.export(p.take())
		case ack := <-p.flush:
			for drained := false; !drained; {
				select {
				case b := <-p.full:
					p.export(b)
				default:
					drained = true
				}
			}
			p.export(p.take())
			close(ack)
		case <-p.done:
			return
		}
	}
}

// take returns the batch being filled (nil if it is empty).
func (p *otlpProcessor) take() *otlpBatch {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur.n == 0 {
		return nil
	}
	b := p.cur
	p.cur = &otlpBatch{}
	return b
}

func (p *otlpProcessor) export(b *otlpBatch) {
	if b == nil {
		return
	}
	if d := p.dropped.Load(); d > p.reported {
		otel.Handle(fmt.Errorf("tracing: %d spans dropped, the export queue (OTEL_BSP_MAX_QUEUE_SIZE %d) was full", d-p.reported, p.maxQueue))
		p.reported = d
	}
	// The batch leaves the queue as its export starts, as with the SDK's
	// processor: the queue's size is what may wait behind an export.
	p.mu.Lock()
	p.queued -= b.n
	p.mu.Unlock()
	body := p.request(p.body[:0], b)
	p.body = nil
	// The spans were copied into the request: their buffers serve the
	// next batches (a batch's is ~128 KiB; allocating one per batch
	// kept the runtime's scavenger busy returning pages, and was a
	// traced request's largest allocation after its spans).
	for i := range b.scopes {
		buf := b.scopes[i].spans[:0]
		p.buffers.Put(&buf)
	}
	reusable, err := p.send(body)
	if err != nil {
		otel.Handle(fmt.Errorf("tracing: exporting %d spans to %s: %w", b.n, p.url, err))
	}
	if reusable {
		p.body = body
	}
}

// request encodes the ExportTraceServiceRequest of b: one ResourceSpans
// (this process's resource) holding a ScopeSpans per scope.
func (p *otlpProcessor) request(out []byte, b *otlpBatch) []byte {
	scopeLen := func(sc *otlpScope) int {
		n := len(sc.spans)
		if sc.scope != (instr.Scope{}) {
			n += sizeBytesField(1, sizeScope(sc.scope))
		}
		if sc.scope.SchemaURL != "" {
			n += sizeBytesField(3, strLen(sc.scope.SchemaURL))
		}
		return n
	}
	rs := len(p.resource)
	for i := range b.scopes {
		rs += sizeBytesField(2, scopeLen(&b.scopes[i]))
	}
	if p.schema != "" {
		rs += sizeBytesField(3, strLen(p.schema))
	}
	out = slices.Grow(out[:0], sizeBytesField(1, rs))
	out = protowire.AppendTag(out, 1, protowire.BytesType)
	out = protowire.AppendVarint(out, uint64(rs))
	out = append(out, p.resource...)
	for i := range b.scopes {
		sc := &b.scopes[i]
		out = protowire.AppendTag(out, 2, protowire.BytesType)
		out = protowire.AppendVarint(out, uint64(scopeLen(sc)))
		if sc.scope != (instr.Scope{}) {
			out = protowire.AppendTag(out, 1, protowire.BytesType)
			out = protowire.AppendVarint(out, uint64(sizeScope(sc.scope)))
			out = appendScope(out, sc.scope)
		}
		out = append(out, sc.spans...)
		if sc.scope.SchemaURL != "" {
			out = appendString(out, 3, sc.scope.SchemaURL)
		}
	}
	if p.schema != "" {
		out = appendString(out, 3, p.schema)
	}
	return out
}

// send posts one export, retrying what OTLP says to retry (429, 502, 503,
// 504) with a growing pause, within the export's timeout.
func (p *otlpProcessor) send(body []byte) (reusable bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	// The transport closes a request's body when it is done with it,
	// which may be after Do returns: body may serve the next export only
	// once every attempt's reader was closed.
	var open atomic.Int32
	defer func() { reusable = open.Load() == 0 }()
	if p.gzip {
		var zb bytes.Buffer
		zw := gzip.NewWriter(&zb)
		zw.Write(body)
		zw.Close()
		body = zb.Bytes()
	}
	pause := 100 * time.Millisecond
	newBody := func() (io.ReadCloser, error) {
		open.Add(1)
		return &exportBody{Reader: bytes.NewReader(body), open: &open}, nil
	}
	for {
		rc, _ := newBody()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, rc)
		if err != nil {
			return false, err
		}
		req.ContentLength, req.GetBody = int64(len(body)), newBody
		for k, v := range p.headers {
			req.Header[k] = v
		}
		req.Header.Set("Content-Type", "application/x-protobuf")
		if p.gzip {
			req.Header.Set("Content-Encoding", "gzip")
		}
		resp, err := p.client.Do(req)
		if err != nil {
			return false, err
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		switch {
		case resp.StatusCode >= 200 && resp.StatusCode < 300:
			return false, nil
		case resp.StatusCode == 429 || resp.StatusCode == 502 || resp.StatusCode == 503 || resp.StatusCode == 504:
			select {
			case <-ctx.Done():
				return false, fmt.Errorf("%s, retried until the timeout", resp.Status)
			case <-time.After(pause):
			}
			pause *= 2
		default:
			return false, fmt.Errorf("%s: %.200q", resp.Status, msg)
		}
	}
}

// exportBody is an export's request body that tells when the transport
// closed it.
type exportBody struct {
	*bytes.Reader
	open   *atomic.Int32
	closed atomic.Bool
}

func (b *exportBody) Close() error {
	if b.closed.CompareAndSwap(false, true) {
		b.open.Add(-1)
	}
	return nil
}

// ForceFlush exports every span that has ended.
func (p *otlpProcessor) ForceFlush(ctx context.Context) error {
	ack := make(chan struct{})
	select {
	case p.flush <- ack:
	case <-p.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ack:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Shutdown exports what has ended and stops; spans ending later are not
// exported.
func (p *otlpProcessor) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return nil
	}
	p.stopped = true
	p.mu.Unlock()
	err := p.ForceFlush(ctx)
	close(p.done)
	return err
}

// ---- OTLP's protobuf encoding (opentelemetry-proto, trace/v1) ----
//
// Field numbers are OTLP's; a zero scalar is left out, as protobuf's own
// encoder does; a oneof member is always written.

func sizeBytesField(num protowire.Number, n int) int {
	return protowire.SizeTag(num) + protowire.SizeBytes(n)
}

// appendString writes a string field. Protobuf's strings are UTF-8 and
// receivers reject an export holding one that is not (Go's protobuf does),
// which would lose every span of the batch; a guest names its spans and
// attributes with any bytes it likes, so invalid sequences become U+FFFD.
func appendString(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	return protowire.AppendString(b, s)
}

// strLen is the length appendString writes for s.
func strLen(s string) int {
	if utf8.ValidString(s) {
		return len(s)
	}
	return len(strings.ToValidUTF8(s, "\uFFFD"))
}

func appendID(b []byte, num protowire.Number, id []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, id)
}

func appendFixed64(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.Fixed64Type)
	return protowire.AppendFixed64(b, v)
}

func appendUint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func unixNano(t time.Time) uint64 { return uint64(max(0, t.UnixNano())) }

func clampCount(v int) uint64 { return uint64(min(max(v, 0), math.MaxUint32)) }

// appendSpan encodes s as a Span message (without its tag and length).
func appendSpan(b []byte, s *spanData) []byte {
	sc := s.sc
	tid, sid := sc.TraceID(), sc.SpanID()
	b = appendID(b, 1, tid[:])
	b = appendID(b, 2, sid[:])
	if ts := sc.TraceState().String(); ts != "" {
		b = appendString(b, 3, ts)
	}
	parent := s.parent
	if psid := parent.SpanID(); psid.IsValid() {
		b = appendID(b, 4, psid[:])
	}
	if n := s.name; n != "" {
		b = appendString(b, 5, n)
	}
	b = appendUint(b, 6, spanKind(s.kind))
	b = appendFixed64(b, 7, unixNano(s.start))
	b = appendFixed64(b, 8, unixNano(s.end))
	b = appendKVs(b, 9, s.attrs)
	b = appendUint(b, 10, clampCount(s.droppedAttrs))
	for _, e := range s.events {
		n := sizeEvent(e)
		b = protowire.AppendTag(b, 11, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(n))
		b = appendFixed64(b, 1, unixNano(e.Time))
		if e.Name != "" {
			b = appendString(b, 2, e.Name)
		}
		b = appendKVs(b, 3, e.Attributes)
		b = appendUint(b, 4, clampCount(e.DroppedAttributeCount))
	}
	b = appendUint(b, 12, clampCount(s.droppedEvents))
	for _, l := range s.links {
		n := sizeLink(l)
		b = protowire.AppendTag(b, 13, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(n))
		ltid, lsid := l.SpanContext.TraceID(), l.SpanContext.SpanID()
		b = appendID(b, 1, ltid[:])
		b = appendID(b, 2, lsid[:])
		b = appendKVs(b, 4, l.Attributes)
		b = appendUint(b, 5, clampCount(l.DroppedAttributeCount))
		b = protowire.AppendTag(b, 6, protowire.Fixed32Type)
		b = protowire.AppendFixed32(b, spanFlags(l.SpanContext))
	}
	b = appendUint(b, 14, clampCount(s.droppedLinks))
	// The status is always written (empty when unset), as the SDK's
	// exporter does.
	st := s.status
	code := statusCode(st.Code)
	stLen := 0
	if st.Description != "" {
		stLen += sizeBytesField(2, strLen(st.Description))
	}
	if code != 0 {
		stLen += protowire.SizeTag(3) + protowire.SizeVarint(code)
	}
	b = protowire.AppendTag(b, 15, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(stLen))
	if st.Description != "" {
		b = appendString(b, 2, st.Description)
	}
	b = appendUint(b, 3, code)
	b = protowire.AppendTag(b, 16, protowire.Fixed32Type)
	return protowire.AppendFixed32(b, spanFlags(parent))
}

func sizeEvent(e sdktrace.Event) int {
	n := 0
	if unixNano(e.Time) != 0 {
		n += protowire.SizeTag(1) + 8
	}
	if e.Name != "" {
		n += sizeBytesField(2, strLen(e.Name))
	}
	n += sizeKVs(3, e.Attributes)
	if c := clampCount(e.DroppedAttributeCount); c != 0 {
		n += protowire.SizeTag(4) + protowire.SizeVarint(c)
	}
	return n
}

func sizeLink(l sdktrace.Link) int {
	n := sizeBytesField(1, len(trace.TraceID{})) + sizeBytesField(2, len(trace.SpanID{}))
	n += sizeKVs(4, l.Attributes)
	if c := clampCount(l.DroppedAttributeCount); c != 0 {
		n += protowire.SizeTag(5) + protowire.SizeVarint(c)
	}
	return n + protowire.SizeTag(6) + 4
}

// spanFlags are OTLP's SpanFlags: whether the span's parent (or a link's
// target) is known to be remote or not, and whether it is.
func spanFlags(sc trace.SpanContext) uint32 {
	const hasIsRemote, isRemote = 0x100, 0x200
	if sc.IsRemote() {
		return hasIsRemote | isRemote
	}
	return hasIsRemote
}

func spanKind(k trace.SpanKind) uint64 {
	switch k {
	case trace.SpanKindInternal, trace.SpanKindServer, trace.SpanKindClient, trace.SpanKindProducer, trace.SpanKindConsumer:
		return uint64(k) // OTLP numbers its kinds as the API does
	}
	return 0
}

func statusCode(c codes.Code) uint64 {
	switch c {
	case codes.Ok:
		return 1
	case codes.Error:
		return 2
	}
	return 0
}

func appendResource(b []byte, r *resource.Resource) []byte {
	attrs := r.Attributes()
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(sizeKVs(1, attrs)))
	return appendKVs(b, 1, attrs)
}

func sizeScope(s instr.Scope) int {
	n := 0
	if s.Name != "" {
		n += sizeBytesField(1, strLen(s.Name))
	}
	if s.Version != "" {
		n += sizeBytesField(2, strLen(s.Version))
	}
	return n + sizeKVs(3, s.Attributes.ToSlice())
}

func appendScope(b []byte, s instr.Scope) []byte {
	if s.Name != "" {
		b = appendString(b, 1, s.Name)
	}
	if s.Version != "" {
		b = appendString(b, 2, s.Version)
	}
	return appendKVs(b, 3, s.Attributes.ToSlice())
}

// sizeKVs is the size of attrs as repeated KeyValue field num.
func sizeKVs(num protowire.Number, attrs []attribute.KeyValue) int {
	n := 0
	for _, kv := range attrs {
		n += sizeBytesField(num, sizeKV(kv))
	}
	return n
}

func sizeKV(kv attribute.KeyValue) int {
	n := 0
	if kv.Key != "" {
		n += sizeBytesField(1, strLen(string(kv.Key)))
	}
	return n + sizeBytesField(2, sizeValue(kv.Value))
}

func appendKVs(b []byte, num protowire.Number, attrs []attribute.KeyValue) []byte {
	for _, kv := range attrs {
		// The key, and a string value (most of them), are checked for
		// UTF-8 once and their sizes taken from what is written.
		key := validUTF8(string(kv.Key))
		n := 0
		if key != "" {
			n = sizeBytesField(1, len(key))
		}
		var str string
		var vn int
		if kv.Value.Type() == attribute.STRING {
			str = validUTF8(kv.Value.AsString())
			vn = sizeBytesField(1, len(str))
		} else {
			vn = sizeValue(kv.Value)
		}
		b = protowire.AppendTag(b, num, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(n+sizeBytesField(2, vn)))
		if key != "" {
			b = protowire.AppendTag(b, 1, protowire.BytesType)
			b = protowire.AppendString(b, key)
		}
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(vn))
		if kv.Value.Type() == attribute.STRING {
			b = protowire.AppendTag(b, 1, protowire.BytesType)
			b = protowire.AppendString(b, str)
		} else {
			b = appendValue(b, kv.Value)
		}
	}
	return b
}

// validUTF8 is s with invalid sequences as U+FFFD (see appendString).
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// sizeValue is the size of v as an AnyValue message.
func sizeValue(v attribute.Value) int {
	switch v.Type() {
	case attribute.BOOL:
		return protowire.SizeTag(2) + 1
	case attribute.INT64:
		return protowire.SizeTag(3) + protowire.SizeVarint(uint64(v.AsInt64()))
	case attribute.FLOAT64:
		return protowire.SizeTag(4) + 8
	case attribute.STRING:
		return sizeBytesField(1, strLen(v.AsString()))
	case attribute.BOOLSLICE, attribute.INT64SLICE, attribute.FLOAT64SLICE, attribute.STRINGSLICE:
		return sizeBytesField(5, sizeArray(v))
	}
	return sizeBytesField(1, len("INVALID"))
}

// sizeArray is the size of a slice value as an ArrayValue message.
func sizeArray(v attribute.Value) int {
	n := 0
	switch v.Type() {
	case attribute.BOOLSLICE:
		n = len(v.AsBoolSlice()) * sizeBytesField(1, protowire.SizeTag(2)+1)
	case attribute.INT64SLICE:
		for _, x := range v.AsInt64Slice() {
			n += sizeBytesField(1, protowire.SizeTag(3)+protowire.SizeVarint(uint64(x)))
		}
	case attribute.FLOAT64SLICE:
		n = len(v.AsFloat64Slice()) * sizeBytesField(1, protowire.SizeTag(4)+8)
	case attribute.STRINGSLICE:
		for _, x := range v.AsStringSlice() {
			n += sizeBytesField(1, sizeBytesField(1, strLen(x)))
		}
	}
	return n
}

func appendValue(b []byte, v attribute.Value) []byte {
	switch v.Type() {
	case attribute.BOOL:
		b = protowire.AppendTag(b, 2, protowire.VarintType)
		return protowire.AppendVarint(b, protowire.EncodeBool(v.AsBool()))
	case attribute.INT64:
		b = protowire.AppendTag(b, 3, protowire.VarintType)
		return protowire.AppendVarint(b, uint64(v.AsInt64()))
	case attribute.FLOAT64:
		b = protowire.AppendTag(b, 4, protowire.Fixed64Type)
		return protowire.AppendFixed64(b, math.Float64bits(v.AsFloat64()))
	case attribute.STRING:
		return appendString(b, 1, v.AsString())
	case attribute.BOOLSLICE, attribute.INT64SLICE, attribute.FLOAT64SLICE, attribute.STRINGSLICE:
		b = protowire.AppendTag(b, 5, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(sizeArray(v)))
		item := func(b []byte, x attribute.Value) []byte {
			b = protowire.AppendTag(b, 1, protowire.BytesType)
			b = protowire.AppendVarint(b, uint64(sizeValue(x)))
			return appendValue(b, x)
		}
		switch v.Type() {
		case attribute.BOOLSLICE:
			for _, x := range v.AsBoolSlice() {
				b = item(b, attribute.BoolValue(x))
			}
		case attribute.INT64SLICE:
			for _, x := range v.AsInt64Slice() {
				b = item(b, attribute.Int64Value(x))
			}
		case attribute.FLOAT64SLICE:
			for _, x := range v.AsFloat64Slice() {
				b = item(b, attribute.Float64Value(x))
			}
		case attribute.STRINGSLICE:
			for _, x := range v.AsStringSlice() {
				b = item(b, attribute.StringValue(x))
			}
		}
		return b
	}
	return appendString(b, 1, "INVALID")
}

var _ sdktrace.SpanProcessor = (*otlpProcessor)(nil)

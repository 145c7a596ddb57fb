package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"google.golang.org/protobuf/encoding/protowire"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// samplerEnv is the environment that makes a PoP export the share v of its
// requests' traces ("1%", "100%"; "100%:sdk" with the OpenTelemetry SDK's
// spans, batch processor and OTLP exporter instead of Verge's; "100%:sdkspans"
// with the SDK's spans and Verge's processor) to url; "off"
// exports nothing and
// "nometrics" also records no request metrics (the baseline metrics are
// measured against).
func samplerEnv(v, url string) ([]string, error) {
	switch v {
	case "off":
		return nil, nil
	case "nometrics":
		return []string{"VERGE_METRICS=off"}, nil
	}
	share, sdkSpans := strings.CutSuffix(v, ":sdkspans")
	share, sdk := strings.CutSuffix(share, ":sdk")
	pct, err := strconv.ParseFloat(strings.TrimSuffix(share, "%"), 64)
	if err != nil || !strings.HasSuffix(share, "%") || pct <= 0 || pct > 100 {
		return nil, fmt.Errorf("want off, nometrics or a share such as 1%% or 100%% (with :sdk, the SDK's spans, processor and exporter; with :sdkspans, the SDK's spans and Verge's processor)")
	}
	env := []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + url, "OTEL_TRACES_SAMPLER=parentbased_traceidratio",
		"OTEL_TRACES_SAMPLER_ARG=" + strconv.FormatFloat(pct/100, 'f', -1, 64), "OTEL_SERVICE_NAME=" + serviceName(v)}
	switch {
	case sdk:
		env = append(env, "VERGE_OTLP_EXPORTER=sdk")
	case sdkSpans:
		env = append(env, "VERGE_TRACE_SPANS=sdk")
	}
	return env, nil
}

// serviceName names variant v's spans, so that the sink counts each
// variant's apart even when one still exports while the next is measured.
func serviceName(v string) string { return "bench-http-" + v }

// otlpSink is an OTLP/HTTP trace receiver. With decode set it decodes every
// export into OTLP's protobuf messages, as a collector's receiver does;
// otherwise it walks the export's wire structure down to the spans
// (protowire, nothing built), which is what the PoP's own side needs
// checked: every export well-formed, every span counted by its service. A
// collector runs beside the PoP on other cores; here it shares the
// benchmark's two, and decoding 30,000 spans a second costs the server
// about a third of its throughput (docs/benchmarks.md), which is the
// collector's cost, not tracing's. An export that is not well-formed is
// answered 400 and counted, so that a broken exporter cannot pass for a fast
// one.
type otlpSink struct {
	decode   bool
	url      string
	srv      *http.Server
	exports  atomic.Int64
	received atomic.Int64 // bytes, as sent (compressed if it was)
	spans    atomic.Int64
	bad      atomic.Int64
	bufs     sync.Pool

	mu        sync.Mutex
	byService map[string]int64 // spans by their resource's service.name
}

func startOTLPSink(decode bool) (*otlpSink, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &otlpSink{decode: decode, url: "http://" + l.Addr().String(), byService: map[string]int64{}}
	s.bufs.New = func() any { return new(bytes.Buffer) }
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serve)}
	go s.srv.Serve(l)
	return s, nil
}

func (s *otlpSink) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
		http.NotFound(w, r)
		return
	}
	buf := s.bufs.Get().(*bytes.Buffer)
	defer s.bufs.Put(buf)
	buf.Reset()
	n, err := buf.ReadFrom(r.Body)
	s.received.Add(n)
	body := buf.Bytes()
	if err == nil && r.Header.Get("Content-Encoding") == "gzip" {
		var zr *gzip.Reader
		if zr, err = gzip.NewReader(bytes.NewReader(body)); err == nil {
			body, err = io.ReadAll(zr)
		}
	}
	var spans int64
	if err == nil && !s.decode {
		spans, err = s.count(body)
	} else if err == nil {
		spans, err = s.decodeCount(body)
	}
	if err != nil {
		s.bad.Add(1)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.exports.Add(1)
	s.spans.Add(spans)
	out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

// decodeCount unmarshals an export and counts its spans by service.
func (s *otlpSink) decodeCount(body []byte) (int64, error) {
	var req coltrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		return 0, err
	}
	var spans int64
	for _, rs := range req.ResourceSpans {
		var n int64
		for _, ss := range rs.ScopeSpans {
			n += int64(len(ss.Spans))
		}
		service := ""
		for _, a := range rs.GetResource().GetAttributes() {
			if a.Key == "service.name" {
				service = a.GetValue().GetStringValue()
			}
		}
		s.mu.Lock()
		s.byService[service] += n
		s.mu.Unlock()
		spans += n
	}
	return spans, nil
}

// count walks an ExportTraceServiceRequest's wire form: resource_spans (1)
// → resource (1) → attributes (1) for service.name, and scope_spans (2) →
// spans (2), counted. Every field of those levels must parse; what a span
// holds is left to the exporter's own tests.
func (s *otlpSink) count(body []byte) (int64, error) {
	var total int64
	err := walk(body, func(num protowire.Number, rs []byte) error {
		if num != 1 {
			return nil
		}
		service, n := "", int64(0)
		err := walk(rs, func(num protowire.Number, b []byte) error {
			switch num {
			case 1: // resource
				return walk(b, func(num protowire.Number, kv []byte) error {
					if num != 1 {
						return nil
					}
					var key string
					var value []byte
					if err := walk(kv, func(num protowire.Number, b []byte) error {
						switch num {
						case 1:
							key = string(b)
						case 2:
							value = b
						}
						return nil
					}); err != nil {
						return err
					}
					if key == "service.name" {
						return walk(value, func(num protowire.Number, b []byte) error {
							if num == 1 {
								service = string(b)
							}
							return nil
						})
					}
					return nil
				})
			case 2: // scope_spans
				return walk(b, func(num protowire.Number, _ []byte) error {
					if num == 2 {
						n++
					}
					return nil
				})
			}
			return nil
		})
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.byService[service] += n
		s.mu.Unlock()
		total += n
		return nil
	})
	return total, err
}

// walk calls f with each length-delimited field of the message b (others
// are skipped), or returns the first malformed field's error.
func walk(b []byte, f func(protowire.Number, []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if err := f(num, v); err != nil {
			return err
		}
	}
	return nil
}

// spansOf returns the spans received from service.
func (s *otlpSink) spansOf(service string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byService[service]
}

func (s *otlpSink) close() { s.srv.Close() }

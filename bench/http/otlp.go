package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
)

// samplerEnv is the environment that makes a PoP export the share v of its
// requests' traces ("1%", "100%") to url.
func samplerEnv(v, url string) ([]string, error) {
	if v == "off" {
		return nil, nil
	}
	pct, err := strconv.ParseFloat(strings.TrimSuffix(v, "%"), 64)
	if err != nil || !strings.HasSuffix(v, "%") || pct <= 0 || pct > 100 {
		return nil, fmt.Errorf("want off or a share such as 1%% or 100%%")
	}
	return []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + url, "OTEL_TRACES_SAMPLER=parentbased_traceidratio",
		"OTEL_TRACES_SAMPLER_ARG=" + strconv.FormatFloat(pct/100, 'f', -1, 64), "OTEL_SERVICE_NAME=bench-http"}, nil
}

// otlpSink is an OTLP/HTTP trace receiver that reads every export and
// answers it, counting requests and bytes: a collector runs on another
// machine in production, so the sink does no more work on these two cores
// than a socket's read. The payload is not decoded.
type otlpSink struct {
	url      string
	srv      *http.Server
	exports  atomic.Int64
	received atomic.Int64 // bytes
}

func startOTLPSink() (*otlpSink, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &otlpSink{url: "http://" + l.Addr().String()}
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serve)}
	go s.srv.Serve(l)
	return s, nil
}

func (s *otlpSink) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
		http.NotFound(w, r)
		return
	}
	n, _ := io.Copy(io.Discard, r.Body)
	s.exports.Add(1)
	s.received.Add(n)
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK) // an empty ExportTraceServiceResponse
}

func (s *otlpSink) close() { s.srv.Close() }

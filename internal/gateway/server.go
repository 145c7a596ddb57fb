package gateway

import (
	"log"
	"log/slog"
	"net/http"
	"time"
)

// ServerOptions bound what a client can hold open. The zero value of a field
// means its default.
type ServerOptions struct {
	// ReadHeaderTimeout closes connections that send headers too slowly
	// (slowloris); default 10 s.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included; default 60 s.
	ReadTimeout time.Duration
	// IdleTimeout closes idle keep-alive connections; default 120 s.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds the request line and headers; default 64 KiB.
	MaxHeaderBytes int
}

// NewServer wraps h in an http.Server with the given bounds.
func NewServer(h http.Handler, o ServerOptions, logger *slog.Logger) *http.Server {
	if o.ReadHeaderTimeout == 0 {
		o.ReadHeaderTimeout = 10 * time.Second
	}
	if o.ReadTimeout == 0 {
		o.ReadTimeout = 60 * time.Second
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 120 * time.Second
	}
	if o.MaxHeaderBytes == 0 {
		o.MaxHeaderBytes = 64 << 10
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: o.ReadHeaderTimeout,
		ReadTimeout:       o.ReadTimeout,
		IdleTimeout:       o.IdleTimeout,
		MaxHeaderBytes:    o.MaxHeaderBytes,
		ErrorLog:          log.New(slogWriter{logger}, "", 0),
	}
}

type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Debug(string(p), "source", "http")
	return len(p), nil
}

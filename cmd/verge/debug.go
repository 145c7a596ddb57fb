package main

import (
	"log/slog"
	"net/http"
	"net/http/pprof"
)

// serveDebug exposes Go's profiler, for finding where a PoP spends its time.
func serveDebug(addr string, log *slog.Logger) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	log.Info("debug server", "addr", "http://"+addr+"/debug/pprof/")
	if err := http.ListenAndServe(addr, mux); err != nil {
		log.Error("debug server stopped", "err", err)
	}
}

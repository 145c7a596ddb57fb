// Package host is the host side of everything a guest can call beyond its
// own request and response: documents (and following their user), the
// central PoP's single point of truth (claims, stocks, central documents)
// and invoking central functions. Each capability is one file here whose
// host functions go straight to their service; Capabilities registers them
// all with the engine, and status.go maps every service error to the ABI
// status a guest sees, in one table.
//
// Adding a capability is adding its file (its functions, in a
// wasm.Capability, and the service interface they call), its rows in the
// status table, its field in Services and one line in Capabilities.
package host

import (
	"github.com/verge-edge/verge/internal/spot"
	"github.com/verge-edge/verge/internal/wasm"
)

// Services are what host calls reach at a PoP. A nil service makes its
// calls answer UNSUPPORTED, saying what this host lacks.
type Services struct {
	// Documents is the PoP's document service (internal/documents).
	Documents Documents
	// Follower, when set, pulls `local` documents that followed their user
	// from their home PoP before a call uses them.
	Follower *Follower
	// Spot is the single point of truth: the centre's engine, or a client
	// of it at an edge PoP, with the hybrid threshold (internal/stock).
	Spot spot.Engine
	// Invoker runs the app's central functions.
	Invoker Invoker
	// Fetchers gives each app's outbound HTTP (nil: fetch_* answer
	// UNSUPPORTED).
	Fetchers Fetchers
}

// Capabilities is every capability a PoP offers its guests, for
// wasm.Options.Capabilities.
func Capabilities(s Services) []wasm.Capability {
	return []wasm.Capability{
		documentsCapability(s.Documents, s.Follower),
		spotCapability(s.Spot),
		invokeCapability(s.Invoker),
		traceCapability(),
		roomsCapability(),
		FetchCapability(s.Fetchers),
	}
}

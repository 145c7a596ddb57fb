package verge

import (
	"fmt"
	"slices"
)

// PoP is one point of presence as the rest of the network sees it: the
// [[pop]] entries of a PoP's configuration file and of a topology, and the
// PoPs of `verge net`'s net.json, all have this shape.
type PoP struct {
	ID      string  `toml:"id" json:"id"`         // letters, digits, '-' and '_'
	Region  string  `toml:"region" json:"region"` // what collections' regions name
	Lat     float64 `toml:"lat" json:"lat"`       // coordinates, for the WAN model and client routing
	Lon     float64 `toml:"lon" json:"lon"`
	Central bool    `toml:"central" json:"central"` // the single point of truth and the backup of every write
	// Number is the PoP's part of its CRDT replica ids (1..65535, unique
	// in the network); the other part is its incarnation (see RATIONALE.md).
	Number uint16 `toml:"number" json:"number"`
	// Addresses (host:port): its embedded NATS server, its HTTP gateway and
	// its admin API ("" none).
	Mesh  string `toml:"mesh" json:"mesh"`
	HTTP  string `toml:"http" json:"http"`
	Admin string `toml:"admin" json:"admin"`
}

// Network is the set of PoPs and the named groups of `group:NAME` scopes.
type Network struct {
	PoPs   []PoP
	Groups map[string][]string // group name → PoP ids
}

// Validate checks ids, numbers and groups, and that there is exactly one
// central PoP.
func (n *Network) Validate() error {
	ids := map[string]bool{}
	nums := map[uint16]string{}
	central := 0
	for _, p := range n.PoPs {
		if ids[p.ID] {
			return fmt.Errorf("network: PoP id %q appears twice", p.ID)
		}
		ids[p.ID] = true
		if p.Number == 0 {
			return fmt.Errorf("network: PoP %q has no number (1..65535)", p.ID)
		}
		if other, ok := nums[p.Number]; ok {
			return fmt.Errorf("network: PoPs %q and %q have the same number %d", other, p.ID, p.Number)
		}
		nums[p.Number] = p.ID
		if p.Central {
			central++
		}
	}
	if central != 1 {
		return fmt.Errorf("network: %d central PoPs; exactly one must be central", central)
	}
	for g, members := range n.Groups {
		for _, m := range members {
			if !ids[m] {
				return fmt.Errorf("network: group %q names PoP %q, which is not in the network", g, m)
			}
		}
	}
	return nil
}

// PoP returns the PoP with id.
func (n *Network) PoP(id string) (PoP, bool) {
	for _, p := range n.PoPs {
		if p.ID == id {
			return p, true
		}
	}
	return PoP{}, false
}

// Central returns the central PoP.
func (n *Network) Central() (PoP, bool) {
	for _, p := range n.PoPs {
		if p.Central {
			return p, true
		}
	}
	return PoP{}, false
}

// Allowed reports whether PoP id may hold any replica of c: c's regions
// (empty: any) include the PoP's region. Nothing of c ever reaches a PoP
// that is not allowed, not even backup or repair traffic.
func (n *Network) Allowed(id string, c Collection) bool {
	p, ok := n.PoP(id)
	if !ok {
		return false
	}
	return len(c.Regions) == 0 || slices.Contains(c.Regions, p.Region)
}

// Replicates reports whether PoP id keeps a replica of every document of c
// (as opposed to only those written at it or that followed their user
// there): every allowed PoP for global scope, allowed members of the group
// for group scope, and the central PoP (the backup) for every scope.
func (n *Network) Replicates(id string, c Collection) bool {
	if !n.Allowed(id, c) {
		return false
	}
	p, _ := n.PoP(id)
	if p.Central {
		return true
	}
	switch c.Scope.Kind {
	case ScopeGlobal:
		return true
	case ScopeGroup:
		return slices.Contains(n.Groups[c.Scope.Group], id)
	}
	return false
}

// Holds reports whether PoP id may receive documents of c at all: the PoPs
// that replicate c, plus, for local scope, any allowed PoP (a document
// lives where its user is).
func (n *Network) Holds(id string, c Collection) bool {
	if c.Scope.Kind == ScopeLocal {
		return n.Allowed(id, c)
	}
	return n.Replicates(id, c)
}

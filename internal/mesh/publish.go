package mesh

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// Publish sends data to peer on subject verge.to.<peer>.<kind> through this
// PoP's own server, without a reply: one message crossing the link once.
// Messages from this PoP to one peer arrive in the order they were
// published; a message published while the link is down is lost (the
// caller learns of the link's state from Options.OnPeer). Rooms relay
// WebSocket frames this way.
func (m *Mesh) Publish(peer, kind string, data []byte) error {
	if len(data) > MaxPayload {
		return fmt.Errorf("mesh: %s -> %s %s: %d bytes exceed the mesh's %d", m.opts.ID, peer, kind, len(data), MaxPayload)
	}
	return m.local.Publish("verge.to."+peer+"."+kind, data)
}

// HandleMessages receives the messages every peer publishes to this PoP
// with Publish. Messages from one peer are handled one at a time, in the
// order published: h must not block for long.
func (m *Mesh) HandleMessages(kind string, h func(from string, data []byte)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, nc := range m.peers {
		sub, err := nc.Subscribe("verge.to."+m.opts.ID+"."+kind, func(msg *nats.Msg) { h(id, msg.Data) })
		if err != nil {
			return err
		}
		// A relay of a busy room sends many small messages: never drop
		// them for a slow handler before the link itself is too slow.
		_ = sub.SetPendingLimits(1<<20, 256<<20)
		m.subs = append(m.subs, sub)
	}
	return nil
}

// HandleRequestsAsync answers requests of kind addressed to this PoP like
// HandleRequests, but h runs on its own goroutine and answers through
// respond whenever it is ready: a handler that waits (for an fsync) does
// not hold up the requests behind it.
func (m *Mesh) HandleRequestsAsync(kind string, h func(data []byte, respond func([]byte, error))) error {
	sub, err := m.local.Subscribe("verge.at."+m.opts.ID+"."+kind, func(msg *nats.Msg) {
		go h(msg.Data, func(out []byte, err error) { respond(msg, out, err) })
	})
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.subs = append(m.subs, sub)
	m.mu.Unlock()
	if err := m.local.FlushTimeout(5 * time.Second); err != nil {
		return fmt.Errorf("mesh: registering the %q handler with this PoP's NATS server: %w", kind, err)
	}
	return nil
}

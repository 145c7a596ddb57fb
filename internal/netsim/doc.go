// Package netsim emulates a wide-area network between PoPs that all run on
// one machine, and routes clients to their nearest healthy PoP.
//
// The development kernel has no netem and tests cannot assume root, so the
// WAN lives in userspace, in the dialer: every PoP dials its peers through
// its own [Layer], which wraps the TCP connection and holds bytes for the
// one-way latency of the link in both directions (writes before they reach
// the socket, reads before they become readable). Putting the delay on the
// dialing side only has three consequences worth knowing:
//
//   - Accepting sockets stay plain, so an embedded NATS server needs no
//     changes and a round trip over a dialed connection costs exactly
//     2 x one-way, whichever side speaks first.
//   - Latency is per link and per process: each PoP computes it from its
//     own coordinates and the peer's, so there is no central proxy to run,
//     to fail, or to serialise all traffic.
//   - Partitions are cheap and exact: a [Layer] knows every connection of a
//     link, closes them all at once and refuses new dials until healed.
//
// TCP never loses bytes, so packet loss is modelled as what the application
// sees of it: with probability Loss a chunk is held for an extra
// retransmission timeout, and because delivery is strictly ordered
// everything behind it waits too (head-of-line blocking).
package netsim

// SPDX-License-Identifier: Apache-2.0

// Package app is the example controller: in its namespace, for every
// ConfigMap labelled incluster.dev/hash=true, it writes the annotation
// incluster.dev/hash with a hash of the data (ConfigHash; the "config hash"
// teams copy into a Deployment's pod template to roll it when the
// configuration changes) and incluster.dev/writer with the writing replica's
// identity. Only the leader writes; the replicas elect it with a Lease
// (package controller). main only wires Run to the process (arguments,
// streams, signals, exit code), so tests call Run.
//
// A write is a JSON merge patch of the two annotations that carries the
// ConfigMap's resourceVersion: it touches nothing else (an update would send
// the whole cached object back), and it is conditional, so a ConfigMap
// changed since it was read answers 409 Conflict instead of getting the hash
// of stale data; the change is queued again from the informer's event. The
// annotation is written only when the hash differs.
//
// The informer caches only what the work reads: KeepDataHash, its
// transform, keeps the hash of a ConfigMap's data in place of the data and,
// of the metadata, the name, namespace, uid, resourceVersion and whether
// the hash annotation is written, in one string and no map (labels, the
// annotations and managedFields are dropped), so
// the cache of 10,000 ConfigMaps of 1 KiB holds a few MiB, not their data,
// and does not grow when the hashes are written (docs/controller.md,
// "Memory limit").
//
// Exit codes: 0 stopped by SIGTERM or SIGINT (the lease released), or
// --help; 1 a second SIGTERM or SIGINT (at once, lease not released);
// 2 bad usage; 3 not in a cluster, configuration unreadable, or the probe
// address cannot be listened on; 4 stopped on an error: leadership lost or
// the Lease taken, with --exit-on-lost-lease, or the work failed (a
// recovered panic too); 5 the work did not stop
// within --shutdown-timeout (the lease was not released: it expires).
package app

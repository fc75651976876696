// SPDX-License-Identifier: Apache-2.0

package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Run serves the probes (and the metrics, WithMetrics), runs the RBAC preflight until it passes, starts the
// informers and waits for their caches, then contends for the lease and runs
// work while leading, round after round, until ctx is cancelled. Cancel ctx
// to shut down (SignalContext does it on SIGTERM and SIGINT): the work's
// context is cancelled, Run waits for the work to return (up to the shutdown
// timeout), releases the lease and returns nil.
//
// Run returns an error only when the process should exit non-zero: the
// probe or metrics address cannot be listened on, the work returned an error on its
// own, ErrWorkStillRunning, or ErrLeadershipLost (WithExitOnLostLeadership).
// Transient API errors are retried, never returned. Call Run once.
func (m *Manager) Run(ctx context.Context, work Work) error {
	if work == nil {
		return errors.New("controller: Run needs a work function")
	}
	m.mu.Lock()
	if m.started {
		m.mu.Unlock()
		return errors.New("controller: Run was called twice")
	}
	m.started = true
	m.mu.Unlock()

	stopProbes, err := m.serveProbes(ctx)
	if err != nil {
		return err
	}
	defer stopProbes()
	stopMetrics, err := m.serveMetrics(ctx)
	if err != nil {
		return err
	}
	defer stopMetrics()

	m.log.Info("starting", "namespace", m.informerNamespace(), "probes", m.o.probeAddress)
	m.setMemoryLimit(ctx)
	if !m.preflight(ctx) {
		return nil // shut down before the start
	}
	if m.shards != nil {
		m.shards.prepare(ctx) // which informers are made per shard, and who filters
	}
	// The informers live until Run returns, after the lease was released:
	// standbys keep their caches warm.
	informerCtx, stopInformers := context.WithCancel(context.WithoutCancel(ctx))
	defer func() {
		stopInformers()
		m.shutdownInformers()
	}()
	m.startInformers(informerCtx)
	defer m.startEvents(informerCtx)()
	if !m.waitForSync(ctx) {
		return nil
	}
	m.synced.Store(true)
	if m.shards != nil {
		m.log.Info("ready: caches synced; sharing the shards with the other replicas", "shards", m.shards.count)
		return m.shards.run(ctx, work)
	}
	m.log.Info("ready: caches synced; contending for the lease")

	for ctx.Err() == nil {
		again, err := m.contend(ctx, work)
		if !again {
			return err
		}
	}
	return nil
}

// serveProbes listens on the probe address and serves Handler; stop shuts
// the server down: by the shutdown deadline once ctx is cancelled, else
// within 2 s.
func (m *Manager) serveProbes(ctx context.Context) (stop func(), err error) {
	addr := m.o.probeAddress
	if addr == "" || addr == "0" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("probes: %w: choose another address with WithProbeAddress (example-controller: --probe-address)", err)
	}
	srv := &http.Server{Handler: m.Handler(), ReadHeaderTimeout: 5 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.log.Error("probes: server stopped", "err", err)
		}
	}()
	return func() {
		deadline := time.Now().Add(2 * time.Second)
		if ctx.Err() != nil {
			deadline = m.shutdownDeadline()
		}
		sctx, cancel := context.WithDeadline(context.Background(), deadline)
		defer cancel()
		if srv.Shutdown(sctx) != nil {
			_ = srv.Close() // connections still open at the deadline
		}
		<-served
	}, nil
}

// Handler serves the probes, for a program that serves them on its own
// server (with WithProbeAddress("0")):
//
//   - /healthz: 200, or 500 when this replica runs the work but has not
//     renewed the lease within the renew deadline (the work is then being
//     stopped; if it does not stop, the kubelet restarts the container);
//   - /readyz: 200 once the RBAC preflight passed and the caches synced,
//     on the leader and on standbys alike; 503 before, with the reason.
//     Sharded, a line per sharded informer follows "ok": who filters it by
//     shard (the API server, or this replica). A shard's own caches sync
//     when it is taken, before its work starts; they do not change
//     readiness (a replica is ready to take shards);
//   - /leader: 200 on the replica that runs the work under a renewed lease,
//     503 elsewhere; sharded (WithShards), 200 while it holds a shard.
//     Not a probe for the kubelet: for people and tests;
//   - /shards: Shards as JSON: the shards held and assigned here.
func (m *Manager) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		for _, e := range m.electors() {
			if g := e.round.Load(); g != nil {
				if running, taken, since := g.state(); running && !taken && since >= m.o.renewDeadline {
					http.Error(w, fmt.Sprintf("leading, but the Lease %s was last renewed %s ago (renew deadline %s)", e.leaseName, since.Round(time.Second), m.o.renewDeadline), http.StatusInternalServerError)
					return
				}
			}
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		missing := m.preflightMissing.Load()
		switch {
		case missing != nil:
			http.Error(w, "not ready: "+*missing, http.StatusServiceUnavailable)
		case !m.synced.Load():
			http.Error(w, "not ready: RBAC preflight or cache sync not done", http.StatusServiceUnavailable)
		default:
			fmt.Fprintln(w, "ok")
			// Sharded: who filters each sharded informer by shard.
			for _, si := range m.Shards().Informers {
				fmt.Fprintf(w, "sharded %s: %s\n", si.Resource, filteredBy[si.Filter])
			}
		}
	})
	mux.HandleFunc("GET /shards", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(m.Shards())
	})
	mux.HandleFunc("GET /leader", func(w http.ResponseWriter, _ *http.Request) {
		if m.shards != nil {
			if held := m.shards.held(); len(held) > 0 {
				fmt.Fprintf(w, "leader of shards %v of %d: %s\n", held, m.shards.count, m.identity)
				return
			}
			http.Error(w, "no shard held", http.StatusServiceUnavailable)
			return
		}
		if m.IsLeader() {
			fmt.Fprintln(w, "leader: "+m.identity)
			return
		}
		leader := "unknown"
		if l := m.observedLeader.Load(); l != nil && *l != "" {
			leader = *l
		}
		http.Error(w, "not the leader; the leader is "+leader, http.StatusServiceUnavailable)
	})
	return mux
}

// filteredBy words ShardedInformer.Filter for /readyz.
var filteredBy = map[string]string{
	"server": "filtered by the API server (shardSelector)",
	"client": "filtered by this replica (the API server does not apply shardSelector, or WithClientShardFilter)",
}

// IsLeader says whether this replica runs the work under a lease renewed
// within the renew deadline and not found held by another holder. It turns
// false at the moment the work's context is cancelled for a lost or taken
// lease. Sharded (WithShards), it says whether it holds a shard so.
func (m *Manager) IsLeader() bool {
	if m.shards != nil {
		return len(m.shards.held()) > 0
	}
	return m.elector.leading()
}

// electors returns the electors that may run the work here.
func (m *Manager) electors() []*elector {
	if m.shards != nil {
		return m.shards.electors
	}
	return []*elector{m.elector}
}

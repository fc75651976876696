// SPDX-License-Identifier: Apache-2.0

// Package controller is what a controller needs after a client, built on an
// incluster.Client and on client-go's own machinery only: leader election
// (tools/leaderelection with a resourcelock.LeaseLock), shared informers
// (cache.NewSharedIndexInformerWithOptions, one per resource) and
// client-go's workqueue. It adds no election, cache or queue of its
// own; it adds what the pod knows and client-go leaves to every team: where
// the Lease lives, who holds it, what RBAC is missing, when the lease may be
// given back, and what the probes say.
//
// A Manager, made by New, does in Run:
//
//  1. Probes on one port (WithProbeAddress, default ":8081"): /healthz fails
//     when this replica runs the work but has not renewed the lease within the
//     renew deadline; /readyz succeeds once the RBAC preflight passed and the
//     caches synced, on standbys too; /leader answers 200 only on the leader.
//  2. RBAC preflight: every verb the informers (list, watch) and the election
//     (leases get, create, update) need, and those declared with
//     WithPermissions, is checked with SelfSubjectAccessReviews
//     (incluster.Client.Can). While one is missing the replica is not ready
//     and logs one line per round (every 3 s) that names the rule to add to
//     the Role; once the Role is fixed it goes on, without a restart.
//  3. Informers, scoped to the pod's namespace unless WithAllNamespaces, over
//     the client's one HTTP connection, in protobuf, with managedFields dropped
//     (DropManagedFields, applied by client-go v0.37.2 also to WatchList's
//     streamed initial list). Any resource: NewInformer over a typed client
//     (controller.NewInformer(m, cs.CoreV1().Secrets) caches *corev1.Secret
//     and reads it back with Get and List), NewClusterInformer for
//     cluster-scoped ones, DynamicInformer for custom resources
//     (unstructured), MetadataInformer for metadata only; each with its own
//     label and field selectors and transform (WithLabelSelector,
//     WithFieldSelector, WithInformerTransform). Each joins the preflight,
//     readiness and Run.
//  4. The Go memory limit (GOMEMLIMIT) set to 0.9 x the container's memory
//     limit unless GOMEMLIMIT is set (WithMemoryLimitRatio; memory.go).
//  5. Leader election with a Lease named by the caller in the pod's namespace;
//     the identity is POD_NAME (downward API), else the hostname, plus "_"
//     and 5 random characters (Identity). Lease 15 s, renew deadline 10 s,
//     retry 2 s, as controller-runtime. The elected replica runs the work.
//
// # Safe handoff
//
// client-go's ReleaseOnCancel gives the lease back as soon as its renew loop
// stops, without waiting for the leader's function to return, and even when
// renewing failed while that function still runs: two leaders for a moment.
// Run releases the lease only after the work function has returned. On
// shutdown (the context given to Run is cancelled, e.g. by SignalContext on
// SIGTERM) it cancels the work's context and waits for the work to return,
// then stops the elector, which releases the lease, and returns nil. The
// whole shutdown takes at most the shutdown timeout (WithShutdownTimeout,
// default 20 s; keep it shorter than the pod's terminationGracePeriodSeconds):
// the work gets all of it but the release's reserve (one election request
// timeout, at most a quarter). If the work does not return in time, the
// lease is not released: it expires after the lease duration, and Run
// returns ErrWorkStillRunning. The lease lock (leaseGate, election.go)
// refuses a release while the work runs, whatever path inside client-go
// asks for it.
//
// Standbys watch the Lease (a field selector on its name: RBAC list and watch
// on that name) and, when it is released, start a new election round at once
// instead of waiting for client-go's next try (1 to 2.2 retry periods), so a
// rolling update is leaderless for about the time the old work takes to
// return.
//
// # Losing the lease
//
// The work's context is cancelled, and IsLeader turns false, at the first
// sign that this replica may no longer lead:
//
//   - the Lease names another holder (an operator's edit, an etcd restore,
//     another Deployment with the same lease name): seen by the leader's
//     watch of the Lease, confirmed by a read, or by the elector's own read
//     at its next renewal (one retry period). client-go's elector would go
//     on until its renew deadline. The replica then neither releases the
//     other holder's lease nor takes it while it is renewed;
//   - the lease has not been renewed for the renew deadline, counted from
//     the renewTime written into the Lease (an API outage longer than the
//     renew deadline; a shorter one keeps the leader, client-go retries).
//     Each election request has its own timeout, max(renew deadline / 2,
//     1 s), as controller-runtime's, so one hung request cannot cost the
//     lease.
//
// After a lost renewal a standby may take the lease once the lease duration
// has passed since the last renewal: the work must have finished its writes
// by then. WorkBudget says how long that leaves (4 s with the defaults);
// bound every write's context by it. The replica contends again once the
// work has returned; with WithExitOnLostLeadership Run returns
// ErrLeadershipLost instead. Transient API errors never make Run return:
// preflight, informers and election retry.
//
// # Panics
//
// A panic in the work, or in an event handler added with AddEventHandler,
// is recovered, logged with its stack and counted (Panics); the work's
// context is cancelled and Run returns an error wrapping ErrPanicked once
// the work has returned and the lease was released, as after any failed
// work. Handlers added to an informer directly are client-go's: a panic in
// them ends the process.
//
// # Reconcile loop
//
// Manager.Loop makes a reconcile loop over an informer: a Reconciler
// func(ctx, Request) (Result, error) is called for each object added,
// changed or deleted (tombstones included), for each object the cache
// holds when a term begins (the first pass: queued as the workers take,
// at most 100 waiting, so that N objects do not sit in the queue at
// once), for the owner of each object of an Owns
// informer that changes, again with backoff after an error (capped by
// MaxBackoff) and after Result.RequeueAfter. The loop's handlers are added
// once, before the informers start, and feed the queue of the term that
// runs (none on a standby): a replica taking the lease gets no replay of
// the informers' caches, only the first pass; Workers sets how many
// objects are reconciled at once; a panic in the Reconciler is recovered,
// counted and retried like an error. When the term ends no reconcile
// starts, and the running ones keep their context for WorkBudget. Pass
// loop.Work to Run, or Loops(a, b) for several. See ExampleManager_Loop for
// a whole controller and its run on a fake clientset (NewForClientset).
//
// EventRecorder gives the work client-go's recorder of Events
// (events.k8s.io/v1); Role renders, as YAML, the RBAC of everything the
// preflight checks, so that the manifests are written from the program.
//
// # Where things are
//
// election.go: the election round and its gate, the one place that decides
// whether this replica may work (the invariant). work.go: the work's
// contract (budget, panics, AddEventHandler). loop.go: the reconcile loop.
// informers.go: informers and their sync. preflight.go: the RBAC preflight;
// rbac.go: the Role it implies. events.go: Events. memory.go: the Go
// memory limit.
// run.go: Run and the probes. manager.go: New and the options.
//
// Logs go to a log/slog logger (WithLogger). client-go's own logs go through
// klog; a program routes them to the same logger with klog.SetSlogLogger.
//
// A Manager makes only the typed clients it uses itself (coordination,
// authorization, events), and no informer factory (which links a typed
// informer and lister of every built-in resource): a program links the
// clients it names. clients.Kubernetes makes client-go's whole clientset on
// the same connection, for a program that wants it. A program that only
// wants a client imports package incluster alone.
package controller

// SPDX-License-Identifier: Apache-2.0

package controller

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/klog/v2"

	"github.com/incluster/incluster/pkg/incluster"
)

const testNS = "app"

func TestMain(m *testing.M) {
	// client-go's election and informers log through klog: keep test output short.
	klog.SetSlogLogger(slog.New(slog.DiscardHandler))
	os.Exit(m.Run())
}

// Short election timings for tests: whole-second lease, renew deadline >
// 1.2 x retry. No test asserts a duration; these only keep the tests quick.
var fastElection = []Option{
	WithLeaseDuration(1 * time.Second),
	WithRenewDeadline(300 * time.Millisecond),
	WithRetryPeriod(50 * time.Millisecond),
	WithPreflightInterval(time.Millisecond),
	WithProbeAddress("0"),
}

func allowAll(context.Context, authorizationv1.ResourceAttributes) (incluster.Decision, error) {
	return incluster.Decision{Allowed: true}, nil
}

// logBuffer is a slog destination tests can read while the Manager writes.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newTestManager is a Manager on a fake clientset with every access allowed,
// fast election timings, no probe server and the identity id.
func newTestManager(t *testing.T, cs *fake.Clientset, id string, opts ...Option) (*Manager, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	all := append(append([]Option{}, fastElection...), WithIdentity(id), WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	m, err := newManager(cs, testNS, allowAll, "test-lease", append(all, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m, logs
}

// leaseEvents records, in order, the lease writes the fake API server
// received and what the tests' work functions did, to check their order.
type leaseEvents struct {
	mu     sync.Mutex
	events []string
}

func (e *leaseEvents) add(s string) {
	e.mu.Lock()
	e.events = append(e.events, s)
	e.mu.Unlock()
}

func (e *leaseEvents) list() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.events...)
}

// indexOf returns the index of the first event s, or -1.
func (e *leaseEvents) indexOf(s string) int {
	for i, ev := range e.list() {
		if ev == s {
			return i
		}
	}
	return -1
}

// recordLeaseWrites makes cs record every successful-looking lease write as
// "acquire HOLDER"/"renew HOLDER" (create, update) or "release" (an update
// with no holder). The write itself is left to the fake's tracker.
func recordLeaseWrites(cs *fake.Clientset, ev *leaseEvents) {
	record := func(verb string) k8stesting.ReactionFunc {
		return func(a k8stesting.Action) (bool, runtime.Object, error) {
			l := a.(interface{ GetObject() runtime.Object }).GetObject().(*coordinationv1.Lease)
			switch {
			case l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "":
				ev.add("release")
			default:
				ev.add(verb + " " + *l.Spec.HolderIdentity)
			}
			return false, nil, nil
		}
	}
	cs.PrependReactor("create", "leases", record("acquire"))
	cs.PrependReactor("update", "leases", record("renew"))
}

// holder returns the Lease's holder in the fake API server.
func holder(t *testing.T, cs *fake.Clientset) string {
	t.Helper()
	l, err := cs.CoordinationV1().Leases(testNS).Get(context.Background(), "test-lease", getOpts)
	if err != nil {
		t.Fatal(err)
	}
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// within fails the test if ch is not closed or sent on within a generous
// bound: a hang guard, not a timing assertion.
func within[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(20 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// fake returns the fake clientset a test Manager was made with.
func (m *Manager) fake() *fake.Clientset { return m.cs.(*fake.Clientset) }

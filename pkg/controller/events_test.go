// SPDX-License-Identifier: Apache-2.0

package controller

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// An Event recorded by the work reaches the API server (events.k8s.io/v1),
// and the recorder's verbs are in the preflight and the Role.
func TestEventRecorder(t *testing.T) {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: "c", UID: "uid-c"}}
	cs := fake.NewClientset(cm)
	m, _ := newTestManager(t, cs, "pod-a")
	rec := m.EventRecorder("test-controller")
	if role := m.Role("r", ""); !strings.Contains(role, "apiGroups: [\"events.k8s.io\"]\n    resources: [\"events\"]\n    verbs: [\"create\", \"patch\"]") {
		t.Errorf("the Role lacks the events rule:\n%s", role)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := runAsync(ctx, m, func(ctx context.Context) error {
		rec.Eventf(cm, nil, corev1.EventTypeNormal, "Hashed", "Hash", "wrote hash %s", "abc")
		<-ctx.Done()
		return nil
	})
	defer func() {
		cancel()
		if err := within(t, done, "Run to return"); err != nil {
			t.Errorf("Run = %v", err)
		}
	}()
	for range 2000 {
		evs, err := cs.EventsV1().Events(testNS).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(evs.Items) > 0 {
			e := evs.Items[0]
			if e.Reason != "Hashed" || e.Note != "wrote hash abc" || e.Regarding.Name != "c" || e.ReportingController != "test-controller" || e.Type != corev1.EventTypeNormal {
				t.Errorf("event = %+v", e)
			}
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no Event reached the API server")
}

// SPDX-License-Identifier: Apache-2.0

package controller

import (
	"context"

	authorizationv1 "k8s.io/api/authorization/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
)

// This file owns Events: client-go's tools/events (events.k8s.io/v1),
// started and stopped by Run.

// EventRecorder returns a recorder of Events about objects of the cluster
// (events.k8s.io/v1, client-go's tools/events), reported by controller
// (reportingController; client-go makes reportingInstance controller-HOSTNAME):
//
//	rec.Eventf(obj, nil, corev1.EventTypeNormal, "Hashed", "Hash", "wrote hash %s", sum)
//
// The verbs it needs (create and patch of events in events.k8s.io, in the
// pod's namespace) join the RBAC preflight and Role. Call it before Run,
// which sends the recorded Events while it runs (client-go aggregates
// repeats into a series) and stops at its return. An Event is recorded
// only for an object in a namespace the Role covers.
func (m *Manager) EventRecorder(controller string) events.EventRecorder {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.events == nil {
		m.events = events.NewBroadcaster(&events.EventSinkImpl{Interface: m.cs.EventsV1()})
		for _, verb := range []string{"create", "patch"} {
			m.watched = append(m.watched, authorizationv1.ResourceAttributes{
				Namespace: m.namespace, Verb: verb, Group: eventsv1.GroupName, Resource: "events",
			})
		}
	}
	return m.events.NewRecorder(scheme.Scheme, controller)
}

// startEvents sends recorded Events until ctx ends; stop flushes nothing
// more and waits for the broadcaster.
func (m *Manager) startEvents(ctx context.Context) (stop func()) {
	m.mu.Lock()
	b := m.events
	m.mu.Unlock()
	if b == nil {
		return func() {}
	}
	if err := b.StartRecordingToSinkWithContext(ctx); err != nil {
		m.log.Warn("events: not recorded", "err", err)
	}
	return b.Shutdown
}

// SPDX-License-Identifier: Apache-2.0

package controller_test

import (
	"context"
	"log"
	"log/slog"
	"os"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/incluster/incluster/pkg/controller"
	"github.com/incluster/incluster/pkg/incluster"
)

// A controller's main: a client, a Manager for the Lease "my-controller" in
// the pod's namespace, an informer, and the work the leader runs until
// SIGTERM. Run returns nil after a clean shutdown: the work has returned
// and the lease is released.
func Example() {
	ctx := controller.SignalContext(context.Background())
	c, err := incluster.New(incluster.WithUserAgent("my-controller/v0.1.0"))
	if err != nil {
		log.Fatal(err)
	}
	m, err := controller.New(c, "my-controller",
		controller.WithLogger(slog.New(slog.NewJSONHandler(os.Stderr, nil))),
		controller.WithPermissions(authorizationv1.ResourceAttributes{Verb: "patch", Resource: "configmaps"}))
	if err != nil {
		log.Fatal(err)
	}
	configMaps, err := m.Informer(corev1.SchemeGroupVersion.WithResource("configmaps"))
	if err != nil {
		log.Fatal(err)
	}
	err = m.Run(ctx, func(ctx context.Context) error {
		// Leading: handle events until ctx is cancelled, then return.
		reg, err := configMaps.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: func(obj any) { log.Printf("configmap %s", obj.(*corev1.ConfigMap).Name) },
		})
		if err != nil {
			return err
		}
		<-ctx.Done()
		return configMaps.Informer().RemoveEventHandler(reg)
	})
	if err != nil {
		log.Fatal(err) // ErrWorkStillRunning, ErrLeadershipLost, the probe port in use, or the work's error
	}
}

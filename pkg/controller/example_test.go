// SPDX-License-Identifier: Apache-2.0

package controller_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/incluster/incluster/pkg/clients"
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
	cs, err := clients.Kubernetes(c) // client-go's typed clientset, on c's connection
	if err != nil {
		log.Fatal(err)
	}
	configMaps, err := controller.NewInformer(m, cs.CoreV1().ConfigMaps)
	if err != nil {
		log.Fatal(err)
	}
	err = m.Run(ctx, func(ctx context.Context) error {
		// Leading: handle events until ctx is cancelled, then return. The
		// handler is removed when the term ends; a panic in it fails the work.
		// (Manager.Loop does this, with a queue and retries: ExampleManager_Loop.)
		err := m.AddEventHandler(ctx, configMaps, cache.ResourceEventHandlerFuncs{
			AddFunc: func(obj any) { log.Printf("configmap %s", obj.(*corev1.ConfigMap).Name) },
		})
		if err != nil {
			return err
		}
		<-ctx.Done()
		return nil
	})
	if err != nil {
		log.Fatal(err) // ErrWorkStillRunning, ErrLeadershipLost, the probe port in use, or the work's error
	}
}

// The work's time budget: once its context is cancelled for a lost
// renewal, the work has this long until a successor may take the lease
// (lease duration - renew deadline - retry period / 2). Bound each write's
// context by it. New sends no request.
func ExampleManager_WorkBudget() {
	c, err := incluster.NewForConfig(&rest.Config{Host: "https://127.0.0.1:6443"}, "app")
	if err != nil {
		log.Fatal(err)
	}
	for _, opts := range [][]controller.Option{
		nil, // the defaults: 15 s, 10 s, 2 s
		{controller.WithLeaseDuration(60 * time.Second), controller.WithRenewDeadline(15 * time.Second), controller.WithRetryPeriod(5 * time.Second)},
	} {
		m, err := controller.New(c, "my-controller", append(opts, controller.WithIdentity("pod-a"))...)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(m.WorkBudget())
	}
	// Output:
	// 4s
	// 42.5s
}

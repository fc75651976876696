// SPDX-License-Identifier: Apache-2.0

//go:build incluster || inclustermetrics || !(clientgo || controllerruntime)

package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"time"

	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/incluster/incluster/pkg/controller"
	"github.com/incluster/incluster/pkg/incluster"
)

// fill runs a Manager with one informer and returns once the informer has
// synced (Run has passed the RBAC preflight and started it).
func fill(ctx context.Context) (func(context.Context) (int, error), error) {
	c, err := incluster.New()
	if err != nil {
		return nil, err
	}
	m, err := controller.New(c, "cachesync", append(managerOptions(), controller.WithProbeAddress("0"),
		controller.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))...)
	if err != nil {
		return nil, err
	}
	cs, err := corev1client.NewForConfigAndClient(c.Config(), c.HTTPClient())
	if err != nil {
		return nil, err
	}
	inf, err := controller.NewInformer(m, cs.ConfigMaps)
	if err != nil {
		return nil, err
	}
	go func() { _ = m.Run(ctx, func(ctx context.Context) error { <-ctx.Done(); return nil }) }()
	for !inf.HasSynced() {
		if ctx.Err() != nil {
			return nil, errors.New("the informer did not sync in time")
		}
		time.Sleep(time.Millisecond)
	}
	return func(context.Context) (int, error) { return len(inf.GetStore().List()), nil }, nil
}

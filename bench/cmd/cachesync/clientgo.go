// SPDX-License-Identifier: Apache-2.0

//go:build clientgo

package main

import (
	"context"
	"errors"

	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

const mode = "client-go"

// fill starts a typed informer with client-go's defaults and returns once
// it has synced.
func fill(ctx context.Context) (func(context.Context) (int, error), error) {
	ns, err := namespace()
	if err != nil {
		return nil, err
	}
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	f := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(ns))
	inf := f.Core().V1().ConfigMaps().Informer()
	f.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return nil, errors.New("the informer did not sync in time")
	}
	return func(context.Context) (int, error) { return len(inf.GetStore().List()), nil }, nil
}

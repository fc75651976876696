// SPDX-License-Identifier: Apache-2.0

//go:build controllerruntime

package main

import (
	"context"
	"errors"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

const mode = "controller-runtime"

// fill starts controller-runtime's cache for the namespace with an informer
// on ConfigMaps and returns once it has synced.
func fill(ctx context.Context) (func(context.Context) (int, error), error) {
	log.SetLogger(klog.Background())
	ns, err := namespace()
	if err != nil {
		return nil, err
	}
	cfg, err := config.GetConfig()
	if err != nil {
		return nil, err
	}
	c, err := cache.New(cfg, cache.Options{DefaultNamespaces: map[string]cache.Config{ns: {}}})
	if err != nil {
		return nil, err
	}
	if _, err := c.GetInformer(ctx, &corev1.ConfigMap{}); err != nil {
		return nil, err
	}
	go func() { _ = c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		return nil, errors.New("the cache did not sync in time")
	}
	return func(ctx context.Context) (int, error) {
		var l corev1.ConfigMapList
		err := c.List(ctx, &l, client.InNamespace(ns))
		return len(l.Items), err
	}, nil
}

// SPDX-License-Identifier: Apache-2.0

// Command cachesync is the cache-sync program of make bench. Run as if in a
// pod, it fills an informer's cache with the ConfigMaps of its namespace the
// way one kind of program does (-mode), then prints, as one JSON line, how
// many objects the cache holds, the milliseconds from the start of main to
// synced, and the live heap after a GC; and exits.
//
//	-mode=incluster           the library with its defaults: incluster.New,
//	                          controller.New, Informer(configmaps), Run (RBAC
//	                          preflight, then the scoped informer: protobuf,
//	                          managedFields dropped, the client's rate limit)
//	-mode=client-go           client-go's defaults: rest.InClusterConfig
//	                          (QPS 5, burst 10), a typed SharedInformerFactory
//	                          for the namespace, objects kept whole
//	-mode=controller-runtime  controller-runtime's cache with DefaultNamespaces
//	                          set to the namespace, on config.GetConfig (QPS
//	                          20, burst 30); its default transform is none
//
// The namespace is the pod's (the service-account namespace file).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	crcache "sigs.k8s.io/controller-runtime/pkg/cache"
	crconfig "sigs.k8s.io/controller-runtime/pkg/client/config"
	crlog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/incluster/incluster/pkg/controller"
	"github.com/incluster/incluster/pkg/incluster"
)

const nsFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// Result is the JSON line cachesync prints.
type Result struct {
	Mode        string  `json:"mode"`
	Objects     int     `json:"objects"`
	SyncedMS    float64 `json:"syncedMs"`
	HeapAfterGC uint64  `json:"heapAfterGC"`
}

func main() {
	start := time.Now()
	mode := flag.String("mode", "", "incluster, client-go or controller-runtime")
	flag.Parse()
	// client-go and controller-runtime log through klog and logr: keep
	// stdout for the result.
	klog.SetSlogLogger(slog.New(slog.DiscardHandler))
	crlog.SetLogger(klog.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var store toolscache.Store
	var err error
	switch *mode {
	case "incluster":
		store, err = withLibrary(ctx)
	case "client-go":
		store, err = withClientGo(ctx)
	case "controller-runtime":
		store, err = withControllerRuntime(ctx)
	default:
		err = fmt.Errorf("-mode %q: want incluster, client-go or controller-runtime", *mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "cachesync:", err)
		os.Exit(1)
	}
	synced := time.Since(start)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	out, _ := json.Marshal(Result{Mode: *mode, Objects: len(store.List()), SyncedMS: float64(synced) / float64(time.Millisecond), HeapAfterGC: ms.HeapAlloc})
	fmt.Println(string(out))
	os.Exit(0) // the informers still run: the cache must stay alive until the GC above
}

// withLibrary runs a Manager with one informer and returns its store once
// the informer has synced (Run has passed the preflight and started it).
func withLibrary(ctx context.Context) (toolscache.Store, error) {
	c, err := incluster.New()
	if err != nil {
		return nil, err
	}
	m, err := controller.New(c, "cachesync", controller.WithProbeAddress("0"),
		controller.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		return nil, err
	}
	gi, err := m.Informer(corev1.SchemeGroupVersion.WithResource("configmaps"))
	if err != nil {
		return nil, err
	}
	go func() { _ = m.Run(ctx, func(ctx context.Context) error { <-ctx.Done(); return nil }) }()
	inf := gi.Informer()
	for !inf.HasSynced() {
		if ctx.Err() != nil {
			return nil, errors.New("the informer did not sync in time")
		}
		time.Sleep(time.Millisecond)
	}
	return inf.GetStore(), nil
}

func withClientGo(ctx context.Context) (toolscache.Store, error) {
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
	if !toolscache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return nil, errors.New("the informer did not sync in time")
	}
	return inf.GetStore(), nil
}

func withControllerRuntime(ctx context.Context) (toolscache.Store, error) {
	ns, err := namespace()
	if err != nil {
		return nil, err
	}
	cfg, err := crconfig.GetConfig()
	if err != nil {
		return nil, err
	}
	c, err := crcache.New(cfg, crcache.Options{DefaultNamespaces: map[string]crcache.Config{ns: {}}})
	if err != nil {
		return nil, err
	}
	inf, err := c.GetInformer(ctx, &corev1.ConfigMap{})
	if err != nil {
		return nil, err
	}
	go func() { _ = c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		return nil, errors.New("the cache did not sync in time")
	}
	si, ok := inf.(toolscache.SharedIndexInformer)
	if !ok {
		return nil, fmt.Errorf("controller-runtime's informer is a %T, not a SharedIndexInformer", inf)
	}
	return si.GetStore(), nil
}

func namespace() (string, error) {
	b, err := os.ReadFile(nsFile)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

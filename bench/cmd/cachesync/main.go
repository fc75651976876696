// SPDX-License-Identifier: Apache-2.0

// Command cachesync is the cache-sync program of make bench. Run as if in a
// pod, it fills an informer's cache with the ConfigMaps of its namespace the
// way one kind of program does, then prints, as one JSON line, how many
// objects the cache holds, the milliseconds from the start of main to
// synced, and the live heap after a GC; and exits. Each kind is its own
// binary, built with one build tag, so that each links only its stack:
//
//	-tags incluster           the library with its defaults: incluster.New,
//	                          controller.New, NewInformer(configmaps), Run (RBAC
//	                          preflight, then the scoped informer: protobuf,
//	                          managedFields dropped, the client's rate limit)
//	-tags inclustermetrics    the same, measured into pkg/controller/metrics'
//	                          Prometheus registry (not served)
//	-tags clientgo            client-go's defaults: rest.InClusterConfig
//	                          (QPS 5, burst 10), a typed SharedInformerFactory
//	                          for the namespace, objects kept whole
//	-tags controllerruntime   controller-runtime's cache with DefaultNamespaces
//	                          set to the namespace, on config.GetConfig (QPS
//	                          20, burst 30); no transform by default
//
// The namespace is the pod's (the service-account namespace file). With
// -init-only it exits at once, so that its peak RSS is what the binary and
// its package init cost.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"time"

	"k8s.io/klog/v2"
)

// Result is the JSON line cachesync prints.
type Result struct {
	Mode        string  `json:"mode"`
	Objects     int     `json:"objects"`
	SyncedMS    float64 `json:"syncedMs"`
	HeapAfterGC uint64  `json:"heapAfterGC"`
}

func main() {
	start := time.Now()
	initOnly := flag.Bool("init-only", false, "exit at once: what the binary and its package init cost")
	flag.Parse()
	if *initOnly {
		return
	}
	// client-go (and controller-runtime, through klog) log: keep stdout
	// for the result.
	klog.SetSlogLogger(slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	count, err := fill(ctx) // the build tag's
	if err != nil {
		fmt.Fprintf(os.Stderr, "cachesync (%s): %v\n", mode, err)
		os.Exit(1)
	}
	synced := time.Since(start)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	n, err := count(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cachesync (%s): %v\n", mode, err)
		os.Exit(1)
	}
	out, _ := json.Marshal(Result{Mode: mode, Objects: n, SyncedMS: float64(synced) / float64(time.Millisecond), HeapAfterGC: ms.HeapAlloc})
	fmt.Println(string(out))
	os.Exit(0) // the informers still run: the cache must stay alive until the GC above
}

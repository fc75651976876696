// SPDX-License-Identifier: Apache-2.0

// Command cgcontroller is the plain client-go baseline of make bench: the
// example controller's work (cmd/example-controller: the hash of a labelled
// ConfigMap's data and the writer, as annotations) written the way
// client-go's sample controller writes it, with client-go's defaults:
// rest.InClusterConfig (QPS 5, burst 10), leader election on a Lease in the
// pod's namespace (tools/leaderelection: 15 s lease, 10 s renew deadline,
// 2 s retry, released on SIGTERM), a shared informer factory limited to the
// pod's namespace and the labelled ConfigMaps, objects cached whole, a
// rate-limited workqueue and 2 workers. The cache fills while it waits for
// the Lease, as the example's and crcontroller's do. make bench compares the
// memory limit it needs with theirs.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/incluster/incluster/cmd/example-controller/app"
)

const (
	nsFile  = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
	lease   = "cgcontroller"
	workers = 2
)

func main() {
	klog.InitFlags(nil)
	flag.Parse()
	if err := run(); err != nil {
		klog.ErrorS(err, "cgcontroller")
		klog.Flush()
		os.Exit(1)
	}
	klog.Flush()
}

func run() error {
	b, err := os.ReadFile(nsFile)
	if err != nil {
		return err
	}
	ns := strings.TrimSpace(string(b))
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	id, err := os.Hostname()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(ns),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = app.Selector }))
	configMaps := factory.Core().V1().ConfigMaps()
	c := &controller{
		cs:       cs,
		lister:   configMaps.Lister(),
		synced:   configMaps.Informer().HasSynced,
		queue:    workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]()),
		identity: id,
	}
	if _, err := configMaps.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: func(_, obj any) { c.enqueue(obj) },
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()

	var lost bool
	leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
		Lock: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Name: lease, Namespace: ns},
			Client:     cs.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: id},
		},
		LeaseDuration:   15 * time.Second,
		RenewDeadline:   10 * time.Second,
		RetryPeriod:     2 * time.Second,
		ReleaseOnCancel: true,
		Name:            lease,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: c.run,
			// Called on SIGTERM too; a lost Lease with ctx still live ends
			// the process, as the sample controller does.
			OnStoppedLeading: func() { lost = ctx.Err() == nil },
		},
	})
	if lost {
		return errors.New("leader election lost")
	}
	return nil
}

type controller struct {
	cs       kubernetes.Interface
	lister   corev1listers.ConfigMapLister
	synced   cache.InformerSynced
	queue    workqueue.TypedRateLimitingInterface[string]
	identity string
}

func (c *controller) enqueue(obj any) {
	key, err := cache.MetaNamespaceKeyFunc(obj)
	if err != nil {
		klog.ErrorS(err, "no key")
		return
	}
	c.queue.Add(key)
}

// run is the leader's work: the workers, until ctx ends.
func (c *controller) run(ctx context.Context) {
	if !cache.WaitForCacheSync(ctx.Done(), c.synced) {
		return
	}
	klog.InfoS("leading: the work starts", "workers", workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for c.next(ctx) {
			}
		})
	}
	<-ctx.Done()
	c.queue.ShutDown()
	wg.Wait()
}

func (c *controller) next(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	if err := c.sync(ctx, key); err != nil {
		klog.ErrorS(err, "sync", "configmap", key)
		c.queue.AddRateLimited(key)
		return true
	}
	c.queue.Forget(key)
	return true
}

// sync writes the annotations on the ConfigMap of key if its hash
// annotation differs from its data's hash; the patch is conditional on the
// version read, as the example's and crcontroller's are.
func (c *controller) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil // not a key of ours: drop it
	}
	cm, err := c.lister.ConfigMaps(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	sum := app.ConfigHash(cm)
	if cm.Annotations[app.HashAnnotation] == sum {
		return nil
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"resourceVersion": cm.ResourceVersion,
		"annotations":     map[string]string{app.HashAnnotation: sum, app.WriterAnnotation: c.identity},
	}})
	if err != nil {
		return err
	}
	_, err = c.cs.CoreV1().ConfigMaps(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("patch: %w", err)
	}
	klog.InfoS("hash written", "configmap", key, "hash", sum)
	return nil
}

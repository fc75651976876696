// SPDX-License-Identifier: Apache-2.0

// Command crcontroller is the controller-runtime baseline of make bench: the
// example controller's work (cmd/example-controller: the hash of a labelled
// ConfigMap's data and the writer, as annotations) written the way a
// controller-runtime user writes it, with its defaults: a manager with
// leader election (LeaderElectionReleaseOnCancel off unless -release-on-cancel),
// the cache limited to the pod's namespace, one reconciler. make bench
// compares its binary, its handoff and its start with the example
// controller's. Built with -tags securemetrics, it serves /metrics as
// kubebuilder scaffolds it and as the example does (metrics_secure.go); make
// bench gives that binary's size beside the default's.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/incluster/incluster/cmd/example-controller/app"
)

const nsFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

func main() {
	releaseOnCancel := flag.Bool("release-on-cancel", false, "LeaderElectionReleaseOnCancel")
	probeAddr := flag.String("probe-address", ":8081", "HealthProbeBindAddress")
	metricsAddr := flag.String("metrics-address", metricsserver.DefaultBindAddress, "the metrics server's BindAddress")
	flag.Parse()
	ctrl.SetLogger(zap.New())
	if err := run(*releaseOnCancel, *probeAddr, *metricsAddr); err != nil {
		fmt.Fprintln(os.Stderr, "crcontroller:", err)
		os.Exit(1)
	}
}

func run(releaseOnCancel bool, probeAddr, metricsAddr string) error {
	b, err := os.ReadFile(nsFile)
	if err != nil {
		return err
	}
	ns := strings.TrimSpace(string(b))
	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		LeaderElection:                true,
		LeaderElectionID:              "crcontroller",
		LeaderElectionNamespace:       ns,
		LeaderElectionReleaseOnCancel: releaseOnCancel,
		Cache:                         cache.Options{DefaultNamespaces: map[string]cache.Config{ns: {}}},
		HealthProbeBindAddress:        probeAddr,
		Metrics:                       metricsOptions(metricsAddr),
	})
	if err != nil {
		return err
	}
	id, _ := os.Hostname()
	r := &reconciler{c: mgr.GetClient(), identity: id}
	labelled, err := predicate.LabelSelectorPredicate(metav1.LabelSelector{MatchLabels: map[string]string{app.SelectLabel: "true"}})
	if err != nil {
		return err
	}
	if err := ctrl.NewControllerManagedBy(mgr).For(&corev1.ConfigMap{}, builder.WithPredicates(labelled)).Complete(r); err != nil {
		return err
	}
	return mgr.Start(ctrl.SetupSignalHandler())
}

type reconciler struct {
	c        client.Client
	identity string
}

func (r *reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var cm corev1.ConfigMap
	if err := r.c.Get(ctx, req.NamespacedName, &cm); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	sum := app.ConfigHash(&cm)
	if cm.Annotations[app.HashAnnotation] == sum {
		return ctrl.Result{}, nil
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"resourceVersion": cm.ResourceVersion,
		"annotations":     map[string]string{app.HashAnnotation: sum, app.WriterAnnotation: r.identity},
	}})
	if err != nil {
		return ctrl.Result{}, err
	}
	err = r.c.Patch(ctx, &cm, client.RawPatch(types.MergePatchType, patch))
	if apierrors.IsNotFound(err) {
		return ctrl.Result{}, nil
	}
	return ctrl.Result{}, err
}

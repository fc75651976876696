// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"

	"github.com/incluster/incluster/cmd/example-controller/app"
)

// The Bundle custom resource: deploy/crd and deploy/bundles.
var (
	crdFile         = filepath.Join("..", "deploy", "crd", "bundles.yaml")
	bundlesRoleFile = filepath.Join("..", "deploy", "bundles", "role.yaml")
	crdResource     = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
)

// installBundleCRD applies deploy/crd/bundles.yaml (server-side apply, so
// that a cluster where an earlier test installed it gets this version) and
// waits until the API server serves it. The CRD stays: it is the cluster's,
// like kube-system's objects, and every test in the cluster may use it.
func installBundleCRD(t *testing.T) dynamic.Interface {
	t.Helper()
	ctx := t.Context()
	dyn, err := dynamic.NewForConfig(restConfig)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(crdFile)
	if err != nil {
		t.Fatal(err)
	}
	crd := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(data, &crd.Object); err != nil {
		t.Fatalf("%s: %v", crdFile, err)
	}
	if _, err := dyn.Resource(crdResource).Apply(ctx, crd.GetName(), crd, metav1.ApplyOptions{FieldManager: "incluster-e2e", Force: true}); err != nil {
		t.Fatalf("applying %s: %v", crdFile, err)
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		got, err := dyn.Resource(crdResource).Get(ctx, crd.GetName(), metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
		for _, c := range conds {
			if m, _ := c.(map[string]any); m["type"] == "Established" && m["status"] == "True" {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("the CRD %s is not Established within 30 s", crd.GetName())
	}
	return dyn
}

// deployBundles deploys deploy/controller as deploy/bundles changes it:
// --bundles, and the Role of deploy/bundles/role.yaml, which edit may
// change further.
func deployBundles(t *testing.T, name string, edit func(*controllerEnv)) *controllerEnv {
	t.Helper()
	data, err := os.ReadFile(bundlesRoleFile)
	if err != nil {
		t.Fatal(err)
	}
	// The Role is the first document; the ClusterRole after it is deploy/controller's.
	o, _, err := scheme.Codecs.UniversalDeserializer().Decode([]byte(strings.Split(string(data), "\n---")[0]), nil, nil)
	role, ok := o.(*rbacv1.Role)
	if err != nil || !ok {
		t.Fatalf("%s: want a Role first: %v", bundlesRoleFile, err)
	}
	return deployController(t, name, func(e *controllerEnv) {
		c := &e.deployment.Spec.Template.Spec.Containers[0]
		c.Args = append(c.Args, "--bundles")
		e.role.Rules = role.Rules
		if edit != nil {
			edit(e)
		}
	})
}

type bundleState struct {
	generation, observed int64
	ready                map[string]any // the Ready condition, nil if none
}

func readBundle(u *unstructured.Unstructured) bundleState {
	s := bundleState{generation: u.GetGeneration()}
	s.observed, _, _ = unstructured.NestedInt64(u.Object, "status", "observedGeneration")
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		if m, _ := c.(map[string]any); m["type"] == app.ConditionReady {
			s.ready = m
		}
	}
	return s
}

// TestControllerBundles deploys the example controller with --bundles (the
// CRD installed, deploy/bundles' Role) and checks, as a user with kubectl
// would see it:
//   - a Bundle created: its Ready condition True (reason Synced) with
//     observedGeneration 1 within 5 s, and its ConfigMap with spec.data,
//     controlled by the Bundle;
//   - spec.data changed (generation 2): observedGeneration and the
//     condition's follow within 5 s, and so does the ConfigMap's data;
//   - the ConfigMap deleted: a new one (another UID) within 5 s;
//   - an Event (events.k8s.io/v1) on the Bundle for each generation, from
//     the controller;
//   - the CRD's printer columns: the server's Table for bundles shows Ready
//     True and the ConfigMap's name.
func TestControllerBundles(t *testing.T) {
	const within = 5 * time.Second
	dyn := installBundleCRD(t)
	e := deployBundles(t, "bundles", nil)
	ctx := t.Context()
	e.waitReady(2, 2*time.Minute)
	bundles := dyn.Resource(app.BundleResource).Namespace(e.ns)
	configMaps := client.CoreV1().ConfigMaps(e.ns)

	// waitBundle polls the Bundle until ok, for up to within, and returns
	// how long it took.
	waitBundle := func(what string, ok func(bundleState) bool) time.Duration {
		t.Helper()
		start := time.Now()
		var last bundleState
		err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, within, true, func(ctx context.Context) (bool, error) {
			u, err := bundles.Get(ctx, "b1", metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			last = readBundle(u)
			return ok(last), nil
		})
		took := time.Since(start)
		if err != nil {
			t.Fatalf("%s: not within %s; the Bundle's generation %d, observedGeneration %d, Ready %v", what, within, last.generation, last.observed, last.ready)
		}
		t.Logf("%s: %.2f s (Ready %v)", what, took.Seconds(), last.ready)
		return took
	}
	readyFor := func(gen int64) func(bundleState) bool {
		return func(s bundleState) bool {
			return s.generation == gen && s.observed == gen && s.ready != nil && s.ready["status"] == "True" &&
				s.ready["reason"] == app.ReasonSynced && fmt.Sprint(s.ready["observedGeneration"]) == strconv.FormatInt(gen, 10)
		}
	}
	checkConfigMap := func(want map[string]string) *corev1.ConfigMap {
		t.Helper()
		cm, err := configMaps.Get(ctx, "b1", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("the Bundle's ConfigMap: %v", err)
		}
		ref := metav1.GetControllerOf(cm)
		if ref == nil || ref.Kind != "Bundle" || ref.Name != "b1" || ref.APIVersion != app.BundleResource.GroupVersion().String() {
			t.Errorf("ConfigMap b1 is controlled by %+v, want the Bundle b1", ref)
		}
		if fmt.Sprint(cm.Data) != fmt.Sprint(want) {
			t.Errorf("ConfigMap b1 data %v, want %v", cm.Data, want)
		}
		return cm
	}

	b := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": app.BundleResource.GroupVersion().String(), "kind": app.BundleKind.Kind,
		"metadata": map[string]any{"name": "b1"},
		"spec":     map[string]any{"data": map[string]any{"greeting": "hello"}},
	}}
	if _, err := bundles.Create(ctx, b, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating the Bundle: %v", err)
	}
	waitBundle("created -> Ready for generation 1", readyFor(1))
	cm := checkConfigMap(map[string]string{"greeting": "hello"})

	cur, err := bundles.Get(ctx, "b1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_ = unstructured.SetNestedStringMap(cur.Object, map[string]string{"greeting": "hi", "lang": "en"}, "spec", "data")
	if _, err := bundles.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("changing the Bundle's spec: %v", err)
	}
	waitBundle("spec changed -> Ready for generation 2", readyFor(2))
	cm = checkConfigMap(map[string]string{"greeting": "hi", "lang": "en"})

	if err := configMaps.Delete(ctx, "b1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, within, true, func(ctx context.Context) (bool, error) {
		got, err := configMaps.Get(ctx, "b1", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		return got.UID != cm.UID, nil
	})
	if err != nil {
		t.Fatalf("the ConfigMap deleted by hand is not back within %s", within)
	}
	t.Logf("the deleted ConfigMap is back (new UID) %.2f s after the deletion", time.Since(deleted).Seconds())
	checkConfigMap(map[string]string{"greeting": "hi", "lang": "en"})

	// The Events on the Bundle.
	var notes []string
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		evs, err := client.EventsV1().Events(e.ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		notes = notes[:0]
		for _, ev := range evs.Items {
			if ev.Regarding.Kind == app.BundleKind.Kind && ev.Regarding.Name == "b1" && ev.Reason == app.ReasonSynced &&
				ev.Type == corev1.EventTypeNormal && ev.ReportingController == app.UserAgent {
				notes = append(notes, ev.Note)
			}
		}
		return slices.ContainsFunc(notes, func(n string) bool { return strings.HasPrefix(n, "generation 1: ") }) &&
			slices.ContainsFunc(notes, func(n string) bool { return strings.HasPrefix(n, "generation 2: ") }), nil
	})
	t.Logf("Events on Bundle b1 (reason %s, from %s): %q", app.ReasonSynced, app.UserAgent, notes)
	if err != nil {
		t.Errorf("want an Event for generation 1 and one for generation 2 within 10 s")
	}

	// The printer columns, as kubectl get bundles shows them.
	raw, err := client.CoreV1().RESTClient().Get().AbsPath("/apis", app.BundleResource.Group, app.BundleResource.Version, "namespaces", e.ns, "bundles").
		SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").DoRaw(ctx)
	if err != nil {
		t.Fatalf("the Bundles as a Table: %v", err)
	}
	var table metav1.Table
	if err := json.Unmarshal(raw, &table); err != nil {
		t.Fatal(err)
	}
	var cols []string
	for _, c := range table.ColumnDefinitions {
		cols = append(cols, c.Name)
	}
	row := "none"
	if len(table.Rows) == 1 {
		row = fmt.Sprint(table.Rows[0].Cells)
	}
	t.Logf("kubectl get bundles: columns %v, row %s", cols, row)
	if !slices.Equal(cols, []string{"Name", "Ready", "ConfigMap", "Age"}) || len(table.Rows) != 1 ||
		fmt.Sprint(table.Rows[0].Cells[:3]) != "[b1 True b1]" {
		t.Errorf("the Table of bundles: columns %v, row %s; want Name Ready ConfigMap Age and b1 True b1", cols, row)
	}
}

// TestControllerBundlesPreflight deploys the controller with --bundles and a
// Role without update on bundles/status: the replica stays not Ready and its
// log names the rule to add.
func TestControllerBundlesPreflight(t *testing.T) {
	installBundleCRD(t)
	e := deployBundles(t, "bundles-rbac", func(e *controllerEnv) {
		one := int32(1)
		e.deployment.Spec.Replicas = &one
		e.role.Rules = slices.DeleteFunc(e.role.Rules, func(r rbacv1.PolicyRule) bool { return slices.Contains(r.Resources, "bundles/status") })
	})
	ctx := t.Context()
	rule := fmt.Sprintf(`rule missing: add to the Role in namespace %s: apiGroups [%q] resources ["bundles/status"] verbs ["update"]`, e.ns, app.BundleResource.Group)
	logged := " level=WARN msg=" + strconv.Quote(rule) + " "
	var line, pod string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		for _, p := range e.pods(ctx) {
			for _, l := range strings.Split(e.logs(ctx, p.Name), "\n") {
				if strings.Contains(l, logged) {
					line, pod = l, p.Name
					return true, nil
				}
			}
		}
		return false, nil
	})
	if err != nil {
		var logs []string
		for _, p := range e.pods(ctx) {
			logs = append(logs, e.logs(ctx, p.Name))
		}
		t.Fatalf("no log line names the missing rule within 2 minutes; want a line with%s\nlogs:\n%s", logged, strings.Join(logs, "\n"))
	}
	t.Logf("the replica names the missing rule: %s", line)
	code, body := e.probe(ctx, pod, "/readyz")
	t.Logf("/readyz of %s: %d %s", pod, code, body)
	if code != 503 || body != "not ready: "+rule {
		t.Errorf("/readyz of %s answers %d %q, want 503 %q", pod, code, body, "not ready: "+rule)
	}
	if p, err := client.CoreV1().Pods(e.ns).Get(ctx, pod, metav1.GetOptions{}); err != nil || podReady(p) {
		t.Errorf("pod %s is Ready without update on bundles/status (err %v)", pod, err)
	}
}

// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// handoffCase is one controller deployed with two replicas.
type handoffCase struct {
	label    string
	ns       string
	lease    string
	selector string // the pods' label selector
	apply    func(ctx context.Context) error
}

// handoffs measures how long a rolling update leaves the controller
// without a leader: two replicas, `kubectl delete pod` of the leader 5
// times, seconds from the delete to a new Lease holder. The example
// controller (deploy/controller), then the same controller on
// controller-runtime (cmd/crcontroller) with its default leader election
// and with LeaderElectionReleaseOnCancel.
func handoffs(ctx context.Context, cs kubernetes.Interface, add func(what, value, target string, ok *bool)) error {
	crImage, err := benchImage("crcontroller")
	if err != nil {
		return err
	}
	exNS := "bench-example-" + rand.String(5)
	cases := []handoffCase{
		{"example controller (deploy/controller)", exNS, "incluster-example-controller", "app.kubernetes.io/name=incluster-example-controller",
			func(ctx context.Context) error { return applyExample(ctx, exNS, "") }},
	}
	for _, roc := range []bool{false, true} {
		ns := "bench-cr-" + rand.String(5)
		label := "controller-runtime, default leader election"
		if roc {
			label = "controller-runtime, LeaderElectionReleaseOnCancel"
		}
		cases = append(cases, handoffCase{label, ns, "crcontroller", "app=crcontroller",
			func(ctx context.Context) error {
				return kubectlApply(ctx, benchManifests(ns, "crcontroller", crImage, 2, nil, fmt.Sprintf("-release-on-cancel=%t", roc)))
			}})
	}
	med := map[string]float64{}
	for _, c := range cases {
		secs, err := c.run(ctx, cs)
		if err != nil {
			return fmt.Errorf("handoff, %s: %w", c.label, err)
		}
		med[c.label] = median(secs)
		add("handoff on kubectl delete pod of the leader, 5 times: "+c.label, spread(secs, 1, "%.2f")+" s", "", nil)
	}
	ex := med[cases[0].label]
	def, roc := med[cases[1].label], med[cases[2].label]
	add("handoff: example vs controller-runtime default, release-on-cancel", fmt.Sprintf("%.2fx, %.2fx", ex/def, ex/roc),
		"≤ 0.1x, ≤ 1.25x", new(ex/def <= 0.1 && ex/roc <= 1.25))
	return nil
}

// run deploys the case, measures 5 handoffs and deletes its namespace and
// deploy/controller's cluster-scoped objects (the metrics filter's
// ClusterRole and binding, metrics-reader).
func (c handoffCase) run(ctx context.Context, cs kubernetes.Interface) ([]float64, error) {
	defer func() {
		_ = cs.CoreV1().Namespaces().Delete(context.Background(), c.ns, metav1.DeleteOptions{})
		deleteExampleClusterObjects(cs)
	}()
	if err := c.apply(ctx); err != nil {
		return nil, err
	}
	var secs []float64
	for i := range 5 {
		leader, holder, err := c.leader(ctx, cs)
		if err != nil {
			return nil, err
		}
		deleted := time.Now()
		if err := cs.CoreV1().Pods(c.ns).Delete(ctx, leader, metav1.DeleteOptions{}); err != nil {
			return nil, err
		}
		var at time.Time
		err = wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
			h := c.holder(ctx, cs)
			if h != "" && h != holder && podOfHolder(h) != leader {
				at = time.Now()
				return true, nil
			}
			return false, nil
		})
		if err != nil {
			return nil, fmt.Errorf("handoff %d: no new Lease holder within 2 minutes of deleting %s", i+1, leader)
		}
		secs = append(secs, at.Sub(deleted).Seconds())
		fmt.Fprintf(os.Stderr, "bench: handoff %d, %s: %.2f s\n", i+1, c.label, at.Sub(deleted).Seconds())
	}
	return secs, nil
}

// leader waits until two pods run (Ready where they have a readiness probe)
// and the Lease holder is one of them; it returns that pod and the holder.
func (c handoffCase) leader(ctx context.Context, cs kubernetes.Interface) (pod, holder string, err error) {
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := cs.CoreV1().Pods(c.ns).List(ctx, metav1.ListOptions{LabelSelector: c.selector})
		if err != nil {
			return false, nil
		}
		ready := map[string]bool{}
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil && podReady(&p) {
				ready[p.Name] = true
			}
		}
		holder = c.holder(ctx, cs)
		pod = podOfHolder(holder)
		return len(ready) == 2 && ready[pod], nil
	})
	if err != nil {
		return "", "", fmt.Errorf("namespace %s: not two ready replicas with one holding Lease %s within 3 minutes (holder %q)", c.ns, c.lease, holder)
	}
	return pod, holder, nil
}

func (c handoffCase) holder(ctx context.Context, cs kubernetes.Interface) string {
	l, err := cs.CoordinationV1().Leases(c.ns).Get(ctx, c.lease, metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// podOfHolder is the pod of a Lease holder: the example's identity is
// POD_NAME_<suffix>, controller-runtime's hostname_<uuid>.
func podOfHolder(h string) string {
	if i := strings.LastIndexByte(h, '_'); i > 0 {
		return h[:i]
	}
	return h
}

func podReady(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// applyExample applies deploy/controller into namespace ns, through a
// kustomization that overrides the namespace, with extra appended to it
// (e.g. patches: for the Deployment).
func applyExample(ctx context.Context, ns, extra string) error {
	base, err := filepath.Abs(filepath.Join("..", "deploy", "controller"))
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "incluster-bench-kustomize")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	rel, err := filepath.Rel(dir, base) // kustomize takes no absolute path
	if err != nil {
		return err
	}
	kz := fmt.Sprintf("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: %s\nresources:\n  - %s\n", ns, rel) + extra
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(kz), 0o644); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, *kubectlBin, "apply", "-k", dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("kubectl apply -k deploy/controller (namespace %s): %v\n%s", ns, err, out)
	}
	return nil
}

// deleteExampleClusterObjects deletes the cluster-scoped objects of
// applyExample: the metrics filter's ClusterRole and binding, and
// metrics-reader.
func deleteExampleClusterObjects(cs kubernetes.Interface) {
	bg := context.Background()
	_ = cs.RbacV1().ClusterRoleBindings().Delete(bg, "incluster-example-controller-metrics-auth", metav1.DeleteOptions{})
	for _, r := range []string{"incluster-example-controller", "incluster-example-controller-metrics-reader"} {
		_ = cs.RbacV1().ClusterRoles().Delete(bg, r, metav1.DeleteOptions{})
	}
}

func kubectlApply(ctx context.Context, manifests string) error {
	cmd := exec.CommandContext(ctx, *kubectlBin, "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(manifests)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("kubectl apply: %v\n%s", err, out)
	}
	return nil
}

// benchImage builds bench/cmd/NAME, packs it as /NAME with the image tool
// of hack/ (mkimage, as images.sh does) and imports it into the local
// cluster's containerd; it returns the image reference,
// incluster.local/NAME:bench.
func benchImage(name string) (string, error) {
	ref := "incluster.local/" + name + ":bench"
	bin, err := buildCmd(name)
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(filepath.Dir(bin))
	tar := filepath.Join(filepath.Dir(bin), name+".tar")
	mkimage, _ := filepath.Abs(filepath.Join("..", "_output", "hack", "mkimage"))
	if out, err := exec.Command(mkimage, "-ref", ref, "-out", tar, "-binary", bin, "-path", "/"+name).CombinedOutput(); err != nil {
		return "", fmt.Errorf("%s (built by hack/images.sh): %v\n%s", mkimage, err, out)
	}
	sock := filepath.Join(os.Getenv("INCLUSTER_STATE"), "containerd", "containerd.sock")
	if os.Getenv("INCLUSTER_STATE") == "" {
		sock = "/var/lib/incluster-cluster/containerd/containerd.sock" // hack/local-cluster.sh's
	}
	if out, err := exec.Command("ctr", "--address", sock, "-n", "k8s.io", "images", "import", tar).CombinedOutput(); err != nil {
		return "", fmt.Errorf("ctr images import %s: %v\n%s", tar, err, out)
	}
	return ref, nil
}

// benchManifests is bench/cmd/NAME (image) deployed as deploy/controller
// deploys the example: benchRBAC, then a Deployment of replicas pods
// labelled app=NAME, Pod Security restricted, with args. A memory quantity
// is its requests.memory and limits.memory, with the example's CPU request
// (10m), so that its pod has the example's QoS class and CPU weight.
func benchManifests(ns, name, image string, replicas int, memory *resource.Quantity, args ...string) string {
	argv, _ := json.Marshal(append([]string{}, args...)) // a JSON list is a YAML flow sequence
	resources := ""
	if memory != nil {
		resources = fmt.Sprintf("\n          resources: {requests: {cpu: 10m, memory: %[1]s}, limits: {memory: %[1]s}}", memory)
	}
	return benchRBAC(ns, name) + fmt.Sprintf(`---
apiVersion: apps/v1
kind: Deployment
metadata: {name: %[2]s, namespace: %[1]s}
spec:
  replicas: %[4]d
  selector: {matchLabels: {app: %[2]s}}
  template:
    metadata: {labels: {app: %[2]s}}
    spec:
      serviceAccountName: %[2]s
      securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
      containers:
        - name: %[2]s
          image: %[3]s
          imagePullPolicy: IfNotPresent
          args: %[5]s
          securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}%[6]s
`, ns, name, image, replicas, argv, resources)
}

// benchRBAC is the namespace of bench/cmd/NAME (Pod Security restricted),
// its ServiceAccount NAME, and a Role NAME with what controller-runtime's
// manager needs (its leader election also records events; cmd/cgcontroller
// needs the same less the events), bound to it.
func benchRBAC(ns, name string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata:
  name: %[1]s
  labels:
    pod-security.kubernetes.io/enforce: restricted
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: %[2]s, namespace: %[1]s}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: %[2]s, namespace: %[1]s}
rules:
  - apiGroups: [""]
    resources: ["configmaps"]
    verbs: ["get", "list", "watch", "patch"]
  - apiGroups: ["coordination.k8s.io"]
    resources: ["leases"]
    verbs: ["get", "create", "update"]
  - apiGroups: ["", "events.k8s.io"]
    resources: ["events"]
    verbs: ["create", "patch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: %[2]s, namespace: %[1]s}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: %[2]s}
subjects: [{kind: ServiceAccount, name: %[2]s, namespace: %[1]s}]
`, ns, name)
}

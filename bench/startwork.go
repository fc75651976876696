// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/incluster/incluster/cmd/example-controller/app"
)

// startConfigMaps is how many labelled ConfigMaps the namespace holds when
// the controller starts.
const startConfigMaps = 100

// startProg is one controller of the start-to-work measurement.
type startProg struct {
	label string
	argv  []string
	sa    string // its ServiceAccount
	// rbac makes the namespace, the ServiceAccount and its Role.
	rbac func(ctx context.Context, cs kubernetes.Interface, ns string) error
	// marks are log messages whose times the per-run line shows.
	marks []string
}

// startWork measures how long a controller takes from exec to its first
// write: a fresh namespace per run (so a fresh Lease) with 100 labelled
// ConfigMaps and the controller's RBAC, one replica started as if in a pod,
// seconds from exec to the first ConfigMap carrying incluster.dev/hash (seen
// by a watch started before the exec). The example controller
// (deploy/controller's Role and arguments) and the same controller on
// controller-runtime (cmd/crcontroller, benchRBAC), 5 runs each, interleaved.
func startWork(ctx context.Context, cs kubernetes.Interface, pod *fakePod, add func(what, value, target string, ok *bool)) error {
	ex, err := buildPkg("github.com/incluster/incluster/cmd/example-controller", "example-controller")
	if err != nil {
		return err
	}
	defer os.RemoveAll(filepath.Dir(ex))
	cr, err := buildCmd("crcontroller")
	if err != nil {
		return err
	}
	defer os.RemoveAll(filepath.Dir(cr))
	progs := []startProg{
		{label: "example controller (pkg/controller)", sa: "incluster-example-controller",
			// deploy/controller/deployment.yaml's arguments; probes on a free port.
			argv:  []string{ex, "--lease-name=incluster-example-controller", "--probe-address=127.0.0.1:0", "--shutdown-timeout=20s", "--retry-period=1s", "--metrics-bind-address=127.0.0.1:0"},
			rbac:  applyExampleRBAC,
			marks: []string{"ready: caches synced", "successfully acquired lease", "leading: the work starts", "hash written"}},
		{label: "the same controller on controller-runtime (cmd/crcontroller)", sa: "crcontroller",
			argv: []string{cr, "-probe-address=127.0.0.1:0", "-metrics-address=127.0.0.1:0"},
			rbac: func(ctx context.Context, _ kubernetes.Interface, ns string) error {
				return kubectlApply(ctx, benchRBAC(ns, "crcontroller"))
			},
			marks: []string{"successfully acquired lease", "Starting workers"}},
	}
	defer func() { // applyExampleRBAC's bindings
		_ = cs.RbacV1().ClusterRoleBindings().DeleteCollection(context.Background(), metav1.DeleteOptions{},
			metav1.ListOptions{LabelSelector: benchLabel + "=startwork"})
	}()
	secs := make([][]float64, len(progs))
	for i := range 5 {
		for j, p := range progs {
			s, phases, err := p.run(ctx, cs, pod)
			if err != nil {
				return fmt.Errorf("start to work, %s: %w", p.label, err)
			}
			secs[j] = append(secs[j], s)
			fmt.Fprintf(os.Stderr, "bench: start to work %d, %s: %.2f s (%s)\n", i+1, p.label, s, phases)
		}
	}
	what := fmt.Sprintf("exec to the first of %d ConfigMaps annotated, 5 times: ", startConfigMaps)
	for j, p := range progs {
		add(what+p.label, spread(secs[j], 1, "%.2f")+" s", "", nil)
	}
	r := median(secs[0]) / median(secs[1])
	add(fmt.Sprintf("exec to the first of %d ConfigMaps annotated: example vs controller-runtime", startConfigMaps),
		fmt.Sprintf("%.2fx", r), "≤ 1.0x", new(r <= 1.0))
	return nil
}

// run is one run: a new namespace with the program's RBAC and the
// ConfigMaps, the program as if in a pod until the first ConfigMap is
// annotated, then SIGTERM, and the namespace deleted (waiting until it is
// gone, so that its deletion does not load the next run). It returns the
// seconds from exec to the annotation seen, and the times of p.marks in the
// program's log, from exec.
func (p startProg) run(ctx context.Context, cs kubernetes.Interface, pod *fakePod) (secs float64, phases string, err error) {
	ns := "bench-start-" + rand.String(5)
	defer deleteNamespace(cs, ns)
	if err := p.rbac(ctx, cs, ns); err != nil {
		return 0, "", err
	}
	if err := fillConfigMaps(ctx, cs, ns, startConfigMaps, map[string]string{app.SelectLabel: "true"}); err != nil {
		return 0, "", err
	}
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, p.sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: new(int64(3600))}}, metav1.CreateOptions{})
	if err != nil {
		return 0, "", err
	}
	fp := &fakePod{ns: ns, token: tr.Status.Token, ca: pod.ca, host: pod.host, port: pod.port}
	err = fp.writeDir()
	if fp.dir != "" {
		defer os.RemoveAll(fp.dir)
	}
	if err != nil {
		return 0, "", err
	}

	// The watch is established (its answer's headers are in) before the exec.
	list, err := cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{Limit: 1})
	if err != nil {
		return 0, "", err
	}
	wctx, stopWatch := context.WithTimeout(ctx, 2*time.Minute)
	defer stopWatch()
	w, err := cs.CoreV1().ConfigMaps(ns).Watch(wctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
	if err != nil {
		return 0, "", err
	}
	defer w.Stop()

	cmd := fp.command(fp.host, fp.port, p.argv)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, "", err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() { stopProcess(cmd, exited) }
	var at time.Time
	for at.IsZero() {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				stop()
				return 0, "", fmt.Errorf("no ConfigMap annotated within 2 minutes; log:\n%s", logs.String())
			}
			if cm, isCM := ev.Object.(*corev1.ConfigMap); isCM && ev.Type == watch.Modified && cm.Annotations[app.HashAnnotation] != "" {
				at = time.Now()
			}
		case err := <-exited:
			return 0, "", fmt.Errorf("exited before annotating a ConfigMap (%v); log:\n%s", err, logs.String())
		}
	}
	stop()
	return at.Sub(start).Seconds(), logPhases(logs.Bytes(), start, p.marks), nil
}

// benchLabel marks the cluster-scoped objects a bench part makes, to delete
// them at its end.
const benchLabel = "incluster.dev/bench"

// applyExampleRBAC makes namespace ns and applies deploy/controller's
// ServiceAccount, Role and RoleBinding in it, its ClusterRole (the metrics
// filter's TokenReviews and SubjectAccessReviews), and a ClusterRoleBinding
// of that for the namespace's service account.
func applyExampleRBAC(ctx context.Context, cs kubernetes.Interface, ns string) error {
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	args := []string{"apply", "-n", ns}
	for _, f := range []string{"serviceaccount.yaml", "role.yaml", "rolebinding.yaml"} {
		args = append(args, "-f", filepath.Join("..", "deploy", "controller", f))
	}
	if out, err := exec.CommandContext(ctx, *kubectlBin, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("kubectl apply deploy/controller's RBAC (namespace %s): %v\n%s", ns, err, out)
	}
	_, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "incluster-example-controller-metrics-auth-" + ns, Labels: map[string]string{benchLabel: "startwork"}},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "incluster-example-controller"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "incluster-example-controller", Namespace: ns}},
	}, metav1.CreateOptions{})
	return err
}

// deleteNamespace deletes ns and waits up to 2 minutes until it is gone.
func deleteNamespace(cs kubernetes.Interface, ns string) {
	ctx := context.Background()
	if err := cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		return
	}
	_ = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
}

// logPhases finds the first log line holding each mark and gives its time
// from start: "mark +0.12 s, ...". It reads log/slog's text lines
// (time=RFC3339) and zap's JSON lines ("ts": seconds since the epoch).
func logPhases(logs []byte, start time.Time, marks []string) string {
	var parts []string
	for _, mark := range marks {
		sc := bufio.NewScanner(bytes.NewReader(logs))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if !strings.Contains(line, mark) {
				continue
			}
			if t, ok := lineTime(line); ok {
				parts = append(parts, fmt.Sprintf("%s +%.3f s", mark, t.Sub(start).Seconds()))
				break
			}
		}
	}
	return strings.Join(parts, ", ")
}

// lineTime is the time of a log/slog text line or of a zap JSON line.
func lineTime(line string) (time.Time, bool) {
	if strings.HasPrefix(line, "time=") {
		f, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
		t, err := time.Parse(time.RFC3339Nano, f)
		return t, err == nil
	}
	var z struct {
		TS json.Number `json:"ts"`
	}
	if json.Unmarshal([]byte(line), &z) != nil || z.TS == "" {
		return time.Time{}, false
	}
	f, err := strconv.ParseFloat(string(z.TS), 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(0, int64(f*1e9)), true
}

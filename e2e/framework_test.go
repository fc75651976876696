// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/incluster/incluster/cmd/demo/app"
)

// Settings from the environment (hack/e2e.sh sets them).
var (
	client       kubernetes.Interface
	restConfig   *rest.Config
	demoImage    = envOr("DEMO_IMAGE", "incluster-demo:dev")
	kubectlImage = envOr("KUBECTL_IMAGE", "incluster.local/kubectl:v1.37.2")
	deployDir    = envOr("DEPLOY_DIR", filepath.Join("..", "deploy", "base"))
	podTimeout   = 3 * time.Minute
)

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func TestMain(m *testing.M) {
	kc := os.Getenv("KUBECONFIG")
	if kc == "" {
		fmt.Fprintln(os.Stderr, "e2e: KUBECONFIG is not set: point it at a cluster, or run make e2e (hack/e2e.sh)")
		os.Exit(1)
	}
	if err := loadKubeconfig(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "e2e: cluster %s, demo image %s, kubectl image %s\n", restConfig.Host, demoImage, kubectlImage)
	code := m.Run()
	if builtDemo != "" {
		_ = os.RemoveAll(filepath.Dir(builtDemo))
	}
	os.Exit(code)
}

// loadKubeconfig sets client and restConfig from $KUBECONFIG; it is read
// again after a test changes the cluster's CA (TestClusterCARotation).
func loadKubeconfig() error {
	kc := os.Getenv("KUBECONFIG")
	cfg, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		return fmt.Errorf("kubeconfig %s: %v", kc, err)
	}
	cfg.QPS, cfg.Burst = -1, 0
	restConfig = cfg
	client = kubernetes.NewForConfigOrDie(cfg)
	return nil
}

// demoCase says how to deploy the demo for one test.
type demoCase struct {
	name         string
	args         func(ns string) []string // demo flags; -o json is added
	sidecar      bool                     // deploy/sidecar: kubectl proxy next to the demo
	noRole       bool                     // leave out deploy/role.yaml and rolebinding.yaml
	noToken      bool                     // automountServiceAccountToken: false
	podNamespace string                   // if set, POD_NAMESPACE's value, through the downward API (podNamespaceAnnotation)
}

// podNamespaceAnnotation carries demoCase.podNamespace on the pod; the
// downward API puts it in POD_NAMESPACE. It is an annotation, not
// metadata.namespace, so that the value can differ from the namespace file.
const podNamespaceAnnotation = "e2e.incluster.example/pod-namespace"

// result is what a demo pod did.
type result struct {
	ns, sa   string
	exitCode int32
	logs     string
	report   *app.Report // nil if the pod printed none
}

const demoContainer = "demo"

// runDemo deploys the demo as c says into a namespace of its own, waits for
// the demo container to exit and returns what it printed. The namespace goes
// away when the test ends; if the test failed, its events and logs are
// printed first.
func runDemo(t *testing.T, c demoCase) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), podTimeout+time.Minute)
	defer cancel()
	ns, sa, pod := deployDemo(t, ctx, c)
	exitCode := waitForExit(t, ctx, ns, pod.Name)
	raw, err := client.CoreV1().Pods(ns).GetLogs(pod.Name, &corev1.PodLogOptions{Container: demoContainer}).DoRaw(ctx)
	if err != nil {
		t.Fatalf("logs of %s/%s: %v", ns, pod.Name, err)
	}
	r := result{ns: ns, sa: sa, exitCode: exitCode, logs: string(raw)}
	t.Logf("pod %s/%s: exit code %d, log:\n%s", ns, pod.Name, exitCode, r.logs)
	r.report = parseReport(t, r.logs)
	return r
}

// deployDemo creates the demo's objects as c says (deploy/base) in a new
// namespace of its own, and returns the namespace, the ServiceAccount's
// name and the pod, without waiting for it.
func deployDemo(t *testing.T, ctx context.Context, c demoCase) (ns, saName string, pod *corev1.Pod) {
	t.Helper()
	ns = newNamespace(t, ctx, c.name)

	var sa corev1.ServiceAccount
	load(t, "serviceaccount.yaml", &sa)
	create(t, ctx, func() error {
		_, err := client.CoreV1().ServiceAccounts(ns).Create(ctx, &sa, metav1.CreateOptions{})
		return err
	})
	if !c.noRole {
		var role rbacv1.Role
		var binding rbacv1.RoleBinding
		load(t, "role.yaml", &role)
		load(t, "rolebinding.yaml", &binding)
		create(t, ctx, func() error {
			_, err := client.RbacV1().Roles(ns).Create(ctx, &role, metav1.CreateOptions{})
			return err
		})
		create(t, ctx, func() error {
			_, err := client.RbacV1().RoleBindings(ns).Create(ctx, &binding, metav1.CreateOptions{})
			return err
		})
	}

	pod = demoPod(t, c, ns)
	create(t, ctx, func() error { _, err := client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); return err })

	return ns, sa.Name, pod
}

// newNamespace creates a namespace for a test from deploy/base's (Pod
// Security restricted enforced), named e2e-NAME-xxxxx and labelled as the
// suite's; it goes when the test ends (cleanup).
func newNamespace(t *testing.T, ctx context.Context, name string) string {
	t.Helper()
	var nsObj corev1.Namespace
	load(t, "namespace.yaml", &nsObj)
	nsObj.Name = "e2e-" + name + "-" + rand.String(5)
	nsObj.Labels[suiteLabel] = "incluster-e2e"
	create(t, ctx, func() error {
		_, err := client.CoreV1().Namespaces().Create(ctx, &nsObj, metav1.CreateOptions{})
		return err
	})
	t.Cleanup(func() { cleanup(t, nsObj.Name) })
	return nsObj.Name
}

// suiteLabel marks every namespace the suite creates.
const suiteLabel = "app.kubernetes.io/part-of"

// demoPod is deploy/pod.yaml (with deploy/sidecar's patch if asked) adapted
// to the case: image, flags, environment.
func demoPod(t *testing.T, c demoCase, ns string) *corev1.Pod {
	t.Helper()
	var pod corev1.Pod
	load(t, "pod.yaml", &pod)
	if c.sidecar {
		patched, err := strategicpatch.StrategicMergePatch(mustJSON(t, &pod), yamlToJSON(t, "../sidecar/pod-patch.yaml"), &corev1.Pod{})
		if err != nil {
			t.Fatalf("applying deploy/sidecar/pod-patch.yaml: %v", err)
		}
		pod = corev1.Pod{}
		if err := json.Unmarshal(patched, &pod); err != nil {
			t.Fatal(err)
		}
		if len(pod.Spec.InitContainers) != 1 {
			t.Fatalf("deploy/sidecar/pod-patch.yaml: want one sidecar, got %d", len(pod.Spec.InitContainers))
		}
		pod.Spec.InitContainers[0].Image = kubectlImage
	}
	i := slices.IndexFunc(pod.Spec.Containers, func(c corev1.Container) bool { return c.Name == demoContainer })
	if i < 0 {
		t.Fatalf("deploy/pod.yaml has no container %q", demoContainer)
	}
	demo := &pod.Spec.Containers[i]
	demo.Image = demoImage
	var args []string
	if c.sidecar { // keep the patch's --via and --proxy-url
		for _, a := range demo.Args {
			if !strings.HasPrefix(a, "--output") {
				args = append(args, a)
			}
		}
	}
	if c.args != nil {
		args = append(args, c.args(ns)...)
	}
	demo.Args = append(args, "--output=json")
	if c.podNamespace != "" {
		if pod.Annotations == nil {
			pod.Annotations = map[string]string{}
		}
		pod.Annotations[podNamespaceAnnotation] = c.podNamespace
		demo.Env = append(demo.Env, corev1.EnvVar{Name: "POD_NAMESPACE",
			ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations['" + podNamespaceAnnotation + "']"}}})
	}
	if c.noToken {
		pod.Spec.AutomountServiceAccountToken = new(false)
	}
	return &pod
}

// waitForExit waits until the demo container has terminated and returns its
// exit code.
func waitForExit(t *testing.T, ctx context.Context, ns, name string) int32 {
	t.Helper()
	var code int32
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, podTimeout, true, func(ctx context.Context) (bool, error) {
		pod, err := client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil // transient; the timeout ends it
		}
		for _, s := range pod.Status.ContainerStatuses {
			if s.Name == demoContainer && s.State.Terminated != nil {
				code = s.State.Terminated.ExitCode
				return true, nil
			}
		}
		return pod.Status.Phase == corev1.PodFailed, nil
	})
	if err != nil {
		t.Fatalf("pod %s/%s: the demo did not exit within %s: %v", ns, name, podTimeout, err)
	}
	return code
}

// parseReport returns the last JSON report in logs, or nil if there is none.
func parseReport(t *testing.T, logs string) *app.Report {
	t.Helper()
	reps, err := parseReports(logs)
	if err != nil {
		t.Fatal(err)
	}
	if len(reps) == 0 {
		return nil
	}
	return &reps[len(reps)-1]
}

// parseReports returns the JSON reports in logs (lines that start with "{").
func parseReports(logs string) ([]app.Report, error) {
	var reps []app.Report
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var r app.Report
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return nil, fmt.Errorf("the demo printed a line that is not a JSON report: %v\n%s", err, line)
		}
		reps = append(reps, r)
	}
	return reps, sc.Err()
}

// cleanup deletes the test's namespace; if the test failed, it first writes
// the namespace's events and every container's log to files under
// E2E_LOG_DIR (default: incluster-e2e-logs in the system's temporary
// folder) and prints where they are and the last lines of each log. The
// test's failure messages stay the last lines of its output but for those
// few, so that a CI summary showing the end of a failing test's output shows
// them.
func cleanup(t *testing.T, ns string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if t.Failed() {
		dumpNamespace(ctx, t, ns)
	}
	err := client.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("deleting namespace %s: %v", ns, err)
	}
}

// restartsOf returns how often a container of p restarted.
func restartsOf(p corev1.Pod, container string) int32 {
	for _, s := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
		if s.Name == container {
			return s.RestartCount
		}
	}
	return 0
}

func dumpNamespace(ctx context.Context, t *testing.T, ns string) {
	dir := filepath.Join(envOr("E2E_LOG_DIR", filepath.Join(os.TempDir(), "incluster-e2e-logs")), ns)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Logf("cannot keep the logs of namespace %s: %v", ns, err)
		dir = ""
	}
	write := func(name string, data []byte) string {
		if dir == "" {
			return "(not kept)"
		}
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, data, 0o644); err != nil {
			return fmt.Sprintf("(not kept: %v)", err)
		}
		return f
	}
	var out strings.Builder
	if evs, err := client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{}); err == nil {
		var b strings.Builder
		for _, e := range evs.Items {
			fmt.Fprintf(&b, "%s %s %s/%s: %s: %s\n", e.LastTimestamp.UTC().Format(time.RFC3339), e.Type, e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Reason, e.Message)
		}
		fmt.Fprintf(&out, "\n%d events: %s", len(evs.Items), write("events.txt", []byte(b.String())))
	}
	if pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, p := range pods.Items {
			for _, c := range append(p.Spec.InitContainers, p.Spec.Containers...) {
				raw, err := client.CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{Container: c.Name}).DoRaw(ctx)
				if err != nil {
					fmt.Fprintf(&out, "\nlog of %s/%s: %v", p.Name, c.Name, err)
					continue
				}
				fmt.Fprintf(&out, "\nlog of %s/%s (%d lines, restarts %d): %s", p.Name, c.Name, strings.Count(string(raw), "\n"),
					restartsOf(p, c.Name), write(p.Name+"_"+c.Name+".log", raw))
			}
		}
	}
	t.Logf("namespace %s, kept for the failure:%s", ns, out.String())
}

// load decodes deploy/<file> into obj.
func load(t *testing.T, file string, obj runtime.Object) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(deployDir, file))
	if err != nil {
		t.Fatalf("reading the manifest: %v", err)
	}
	if _, _, err := scheme.Codecs.UniversalDeserializer().Decode(data, nil, obj); err != nil {
		t.Fatalf("decoding %s: %v", file, err)
	}
	if m, ok := obj.(metav1.Object); ok && m.GetLabels() == nil {
		m.SetLabels(map[string]string{})
	}
}

func create(t *testing.T, ctx context.Context, f func() error) {
	t.Helper()
	if err := f(); err != nil {
		t.Fatalf("create: %v", err)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func yamlToJSON(t *testing.T, file string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(deployDir, file))
	if err != nil {
		t.Fatal(err)
	}
	b, err := yaml.YAMLToJSON(data)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return b
}

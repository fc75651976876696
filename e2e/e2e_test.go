// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/incluster/incluster/cmd/demo/app"
)

// clusterAPIVersions is GET /api as the test itself sees it.
func clusterAPIVersions(t *testing.T) *metav1.APIVersions {
	t.Helper()
	raw, err := client.Discovery().RESTClient().Get().AbsPath("/api").SetHeader("Accept", "application/json").DoRaw(t.Context())
	if err != nil {
		t.Fatalf("GET /api: %v", err)
	}
	var v metav1.APIVersions
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("GET /api: %v", err)
	}
	return &v
}

// checkAPIVersions compares the pod's /api document with the test's.
func checkAPIVersions(t *testing.T, r *app.Report) {
	t.Helper()
	got := r.APIVersions
	if got == nil {
		t.Fatal("the report has no apiVersions")
	}
	if got.Kind != "APIVersions" || !slices.Contains(got.Versions, "v1") {
		t.Errorf("apiVersions: kind %q, versions %v; want APIVersions with v1", got.Kind, got.Versions)
	}
	if len(got.ServerAddressByClientCIDRs) == 0 {
		t.Errorf("apiVersions.serverAddressByClientCIDRs is empty")
	}
	if want := clusterAPIVersions(t); !equality.Semantic.DeepEqual(got, want) {
		t.Errorf("apiVersions from the pod:\n  %+v\nGET /api from the test:\n  %+v", got, want)
	}
}

// checkOK checks what every successful report has.
func checkOK(t *testing.T, res result, via string) {
	t.Helper()
	if res.exitCode != app.ExitOK {
		t.Errorf("exit code %d, want 0", res.exitCode)
	}
	r := res.report
	if r == nil {
		t.Fatal("the pod printed no JSON report")
	}
	if r.Error != "" {
		t.Errorf("report error: %s", r.Error)
	}
	if r.Via != via {
		t.Errorf("via = %q, want %q", r.Via, via)
	}
	checkAPIVersions(t, r)
	info, err := client.Discovery().ServerVersion()
	if err != nil {
		t.Fatalf("server version: %v", err)
	}
	if r.ServerVersion != info.GitVersion {
		t.Errorf("serverVersion = %q, the cluster says %q", r.ServerVersion, info.GitVersion)
	}
}

func checkUser(t *testing.T, res result) {
	t.Helper()
	want := fmt.Sprintf("system:serviceaccount:%s:%s", res.ns, res.sa)
	if u := res.report.User; u == nil || u.Username != want {
		t.Errorf("user = %+v, want username %s", u, want)
	}
}

// 1. client-go, the default: namespace from the service-account file.
func TestClientGo(t *testing.T) {
	t.Parallel()
	res := runDemo(t, demoCase{name: "client-go"})
	checkOK(t, res, app.ViaClientGo)
	r := res.report
	if r.Namespace != res.ns || r.NamespaceSource != "serviceaccount-file" {
		t.Errorf("namespace %q from %q, want %q from serviceaccount-file", r.Namespace, r.NamespaceSource, res.ns)
	}
	checkUser(t, res)
	if !strings.HasPrefix(r.Host, "https://") {
		t.Errorf("host = %q, want https://...", r.Host)
	}
}

// 2. Direct REST through cluster DNS, as the docs page's curl.
func TestDirectREST(t *testing.T) {
	t.Parallel()
	res := runDemo(t, demoCase{name: "rest", args: func(string) []string { return []string{"--via=rest"} }})
	checkOK(t, res, app.ViaREST)
	if want := "https://kubernetes.default.svc:443"; res.report.Host != want {
		t.Errorf("host = %q, want %q", res.report.Host, want)
	}
	if res.report.Namespace != res.ns {
		t.Errorf("namespace = %q, want %q", res.report.Namespace, res.ns)
	}
}

// 3. A kubectl proxy sidecar: plain HTTP to 127.0.0.1:8001 in the pod.
func TestProxySidecar(t *testing.T) {
	t.Parallel()
	res := runDemo(t, demoCase{name: "proxy", sidecar: true})
	checkOK(t, res, app.ViaProxy)
	if want := "http://127.0.0.1:8001"; res.report.Host != want {
		t.Errorf("host = %q, want %q", res.report.Host, want)
	}
	checkUser(t, res) // the proxy sends the pod's own token
}

// 4. POD_NAMESPACE from the downward API wins over the file. Its value is
// another namespace name than the pod's, which the namespace file holds, so
// that the report can only show it if the environment won.
func TestPodNamespaceEnv(t *testing.T) {
	t.Parallel()
	const envNS = "e2e-from-pod-namespace-env" // a valid name; no such namespace is needed
	res := runDemo(t, demoCase{name: "downward", podNamespace: envNS})
	if envNS == res.ns {
		t.Fatalf("POD_NAMESPACE %q is the pod's own namespace: the test cannot tell env from file", envNS)
	}
	checkOK(t, res, app.ViaClientGo)
	if r := res.report; r.Namespace != envNS || r.NamespaceSource != "POD_NAMESPACE" {
		t.Errorf("namespace %q from %q, want %q from POD_NAMESPACE (the file says %q)", r.Namespace, r.NamespaceSource, envNS, res.ns)
	}
}

// 5. RBAC: the Role of deploy/ lets the demo list pods in its namespace and
// nowhere else; without it, nothing.
func TestRBAC(t *testing.T) {
	t.Parallel()
	t.Run("role allows listing pods in its namespace", func(t *testing.T) {
		t.Parallel()
		res := runDemo(t, demoCase{name: "rbac-allowed", args: func(ns string) []string { return []string{"--read-pods=" + ns} }})
		checkOK(t, res, app.ViaClientGo)
		r := res.report
		if r.CanListPods == nil || !*r.CanListPods {
			t.Errorf("canListPods = %v, want true", r.CanListPods)
		}
		if r.Pods == nil || r.Pods.Namespace != res.ns || r.Pods.Count < 1 {
			t.Errorf("pods = %+v, want at least the demo pod in %s", r.Pods, res.ns)
		}
	})
	t.Run("without the role", func(t *testing.T) {
		t.Parallel()
		res := runDemo(t, demoCase{name: "rbac-none", noRole: true})
		checkOK(t, res, app.ViaClientGo)
		if r := res.report; r.CanListPods == nil || *r.CanListPods {
			t.Errorf("canListPods = %v, want false", r.CanListPods)
		}
	})
	t.Run("another namespace is refused", func(t *testing.T) {
		t.Parallel()
		res := runDemo(t, demoCase{name: "rbac-other", args: func(string) []string { return []string{"--read-pods=kube-system"} }})
		if res.exitCode != app.ExitAPI {
			t.Errorf("exit code %d, want %d", res.exitCode, app.ExitAPI)
		}
		for _, want := range []string{
			`demo: readPods: list pods in namespace kube-system`,
			fmt.Sprintf(`User "system:serviceaccount:%s:%s" cannot list resource "pods"`, res.ns, res.sa),
			// a namespaced request: the hint names a Role and RoleBinding in that namespace
			"(HTTP 403: the service account lacks RBAC permission in namespace kube-system: grant it with a Role and RoleBinding in kube-system (see deploy/))",
		} {
			if !strings.Contains(res.logs, want) {
				t.Errorf("the log lacks %q", want)
			}
		}
		if r := res.report; r == nil || r.Pods != nil || r.APIVersions == nil {
			t.Errorf("want a report with apiVersions and no pods, got %+v", r)
		}
	})
}

// 6. No token mounted: exit 3 and a message that says how to get one.
func TestNoToken(t *testing.T) {
	t.Parallel()
	res := runDemo(t, demoCase{name: "no-token", noToken: true})
	if res.exitCode != app.ExitConfig {
		t.Errorf("exit code %d, want %d", res.exitCode, app.ExitConfig)
	}
	for _, want := range []string{"/var/run/secrets/kubernetes.io/serviceaccount/token", "no service-account token is mounted", "automountServiceAccountToken: true"} {
		if !strings.Contains(res.logs, want) {
			t.Errorf("the log lacks %q", want)
		}
	}
}

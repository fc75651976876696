// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/incluster/incluster/internal/testca"
)

// The scraper (hack/cmd/scrape): GETs URLs with its pod's token and prints
// one JSON line per answer.
var scrapeImage = envOr("SCRAPE_IMAGE", "incluster.local/scrape:v1")

const (
	metricsService  = "incluster-example-controller-metrics"
	metricsReader   = "incluster-example-controller-metrics-reader"
	metricsCertDir  = "/etc/metrics-cert"
	scraperCADir    = "/etc/metrics-ca"
	leaderGauge     = "leader_election_master_status"
	reconcileTotal  = "controller_runtime_reconcile_total"
	controllerLoop  = "configmap-hash"
	metricsCertName = "metrics-cert"
)

// scrapeLine is one line of the scraper's output.
type scrapeLine struct {
	Time        time.Time `json:"time"`
	URL         string    `json:"url"`
	Status      int       `json:"status"`
	Fingerprint string    `json:"fingerprint"`
	Body        string    `json:"body"`
	Error       string    `json:"error"`
	Retries     int       `json:"retries"`
}

// sample returns the value of the series name whose labels include each of
// labels (`k="v"`), in a Prometheus text exposition.
func sample(body, name string, labels ...string) (float64, bool) {
	for _, line := range strings.Split(body, "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		all := true
		for _, l := range labels {
			all = all && strings.Contains(rest, l)
		}
		if !all {
			continue
		}
		f := strings.Fields(rest)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			return v, true
		}
	}
	return 0, false
}

// servingCert returns a new certificate of ca for the DNS name dnsName
// alone, as the tls.crt and tls.key of a Secret, and its SHA-256
// fingerprint.
func servingCert(t *testing.T, ca *testca.CA, dnsName string) (crt, key []byte, fingerprint string) {
	t.Helper()
	leaf := ca.Leaf(t, func(c *x509.Certificate) {
		c.Subject.CommonName, c.DNSNames, c.IPAddresses = dnsName, []string{dnsName}, nil
	})
	crt, key = testca.PEM(t, leaf)
	sum := sha256.Sum256(leaf.Certificate[0])
	return crt, key, fmt.Sprintf("%x", sum)
}

// runScrape runs the scraper in a pod of the test's namespace as service
// account sa ("" : no token at all) and returns its lines.
func (e *controllerEnv) runScrape(t *testing.T, sa string, args ...string) []scrapeLine {
	t.Helper()
	ctx := t.Context()
	name := "scrape-" + utilrand.String(5)
	args = append([]string{"-ca-file", scraperCADir + "/ca.crt", "-server-name", metricsService + "." + e.ns + ".svc"}, args...)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			RestartPolicy:   corev1.RestartPolicyNever,
			SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: new(true), SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			Containers: []corev1.Container{{
				Name: "scrape", Image: scrapeImage, ImagePullPolicy: corev1.PullIfNotPresent, Args: args,
				SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: new(false), Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
				VolumeMounts:    []corev1.VolumeMount{{Name: "ca", MountPath: scraperCADir, ReadOnly: true}},
			}},
			Volumes: []corev1.Volume{{Name: "ca", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: "metrics-ca"}}}}},
		},
	}
	if sa == "" {
		pod.Spec.AutomountServiceAccountToken = new(false)
		pod.Spec.Containers[0].Args = append([]string{"-token-file="}, pod.Spec.Containers[0].Args...)
	} else {
		pod.Spec.ServiceAccountName = sa
	}
	if _, err := client.CoreV1().Pods(e.ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating the scraper pod: %v", err)
	}
	var phase corev1.PodPhase
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := client.CoreV1().Pods(e.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		phase = p.Status.Phase
		return phase == corev1.PodSucceeded || phase == corev1.PodFailed, nil
	})
	if err != nil || phase != corev1.PodSucceeded {
		t.Fatalf("scraper pod %s: phase %q (%v); its log:\n%s", name, phase, err, lastLines(e.logs(ctx, name), 20))
	}
	var lines []scrapeLine
	sc := bufio.NewScanner(strings.NewReader(e.logs(ctx, name)))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var l scrapeLine
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.URL != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// metricsEndpoints returns the pod name -> IP of the metrics Service's
// ready endpoints, once there are n.
func (e *controllerEnv) metricsEndpoints(t *testing.T, n int) map[string]string {
	t.Helper()
	var eps map[string]string
	err := wait.PollUntilContextTimeout(t.Context(), 250*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		slices, err := client.DiscoveryV1().EndpointSlices(e.ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + metricsService})
		if err != nil {
			return false, nil
		}
		eps = map[string]string{}
		for _, s := range slices.Items {
			for _, ep := range s.Endpoints {
				if ep.TargetRef != nil && len(ep.Addresses) > 0 && ep.Conditions.Ready != nil && *ep.Conditions.Ready {
					eps[ep.TargetRef.Name] = ep.Addresses[0]
				}
			}
		}
		return len(eps) == n, nil
	})
	if err != nil {
		t.Fatalf("the Service %s has %d ready endpoints %v, want %d", metricsService, len(eps), eps, n)
	}
	return eps
}

func metricsURL(ip string) string {
	if strings.Contains(ip, ":") {
		ip = "[" + ip + "]"
	}
	return "https://" + ip + ":8443/metrics"
}

// TestControllerMetrics deploys deploy/controller with a serving
// certificate of the test's CA and scrapes /metrics as Prometheus would:
// from a pod whose token is bound to the metrics-reader ClusterRole, each
// replica found through the metrics Service.
func TestControllerMetrics(t *testing.T) {
	e := deployController(t, "metrics", func(e *controllerEnv) {
		spec := &e.deployment.Spec.Template.Spec
		spec.Volumes = append(spec.Volumes, corev1.Volume{Name: "metrics-cert", VolumeSource: corev1.VolumeSource{
			Secret: &corev1.SecretVolumeSource{SecretName: metricsCertName}}})
		c := &spec.Containers[0]
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "metrics-cert", MountPath: metricsCertDir, ReadOnly: true})
		c.Args = append(c.Args, "--metrics-cert-path="+metricsCertDir)
	})
	ctx := t.Context()
	svcName := metricsService + "." + e.ns + ".svc"
	ca := testca.NewCA(t, "incluster-e2e-metrics-ca")
	crt, key, fp1 := servingCert(t, ca, svcName)
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: metricsCertName}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: crt, corev1.TLSPrivateKeyKey: key}}
	create(t, ctx, func() error {
		_, err := client.CoreV1().Secrets(e.ns).Create(ctx, secret, metav1.CreateOptions{})
		return err
	})
	create(t, ctx, func() error {
		_, err := client.CoreV1().ConfigMaps(e.ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "metrics-ca"},
			Data: map[string]string{"ca.crt": string(ca.PEM)}}, metav1.CreateOptions{})
		return err
	})
	for _, sa := range []string{"scraper", "nobody"} {
		create(t, ctx, func() error {
			_, err := client.CoreV1().ServiceAccounts(e.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{})
			return err
		})
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: e.clusterName("scraper")},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: e.clusterName(metricsReader)},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "scraper", Namespace: e.ns}},
	}
	create(t, ctx, func() error {
		_, err := client.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{})
		return err
	})
	t.Cleanup(func() {
		deleteClusterObject(t, "ClusterRoleBinding", binding.Name, client.RbacV1().ClusterRoleBindings().Delete)
	})

	e.waitReady(2, 2*time.Minute)
	leader := e.leaderPod(t)
	eps := e.metricsEndpoints(t, 2)
	standby := ""
	for p := range eps {
		if p != leader {
			standby = p
		}
	}
	lease := `name="` + e.lease + `"`
	loop := `controller="` + controllerLoop + `"`

	var reconciles float64
	t.Run("scrape", func(t *testing.T) {
		// The Service's ClusterIP refuses until kube-proxy has programmed it,
		// which may come after the EndpointSlice is ready: the scraper tries
		// again, as Prometheus does on its next scrape.
		lines := e.runScrape(t, "scraper", "-retry-unreachable", "30s", metricsURL(eps[leader]), metricsURL(eps[standby]), "https://"+svcName+":8443/metrics")
		if len(lines) != 3 {
			t.Fatalf("%d answers for 3 URLs: %+v", len(lines), lines)
		}
		for i, l := range lines {
			if l.Retries > 0 {
				t.Logf("%s: connected after %d refused attempts, 250 ms apart", l.URL, l.Retries)
			}
			if l.Status != 200 || l.Fingerprint != fp1 {
				t.Fatalf("%s: status %d %q, certificate %.12s; want 200 with the Secret's certificate %.12s", l.URL, l.Status, l.Error+firstLine(l.Body), l.Fingerprint, fp1)
			}
			want := 0.0
			if i == 0 {
				want = 1
			}
			if i < 2 {
				if v, ok := sample(l.Body, leaderGauge, lease); !ok || v != want {
					t.Errorf("%s (%s): %s{%s} = %v (present %v), want %v", l.URL, []string{"leader", "standby"}[i], leaderGauge, lease, v, ok, want)
				}
			}
		}
		body := lines[0].Body
		for _, s := range []struct{ name, labels string }{
			{"workqueue_depth", `name="configmap-hash"`},
			{"workqueue_adds_total", `name="configmap-hash"`},
			{"workqueue_queue_duration_seconds_count", `name="configmap-hash"`},
			{"workqueue_work_duration_seconds_count", `name="configmap-hash"`},
			{"workqueue_unfinished_work_seconds", `name="configmap-hash"`},
			{"workqueue_longest_running_processor_seconds", `name="configmap-hash"`},
			{"workqueue_retries_total", `name="configmap-hash"`},
			{reconcileTotal, loop},
			{"controller_runtime_reconcile_errors_total", loop},
			{"controller_runtime_reconcile_panics_total", loop},
			{"controller_runtime_max_concurrent_reconciles", loop},
			{"controller_runtime_active_workers", loop},
			{"rest_client_requests_total", `code="200"`},
			{"rest_client_request_duration_seconds_count", `verb="PUT"`},
			// No rest_client_rate_limiter_duration_seconds: incluster turns
			// client-side rate limiting off (DefaultQPS), so nothing waits.
			{"incluster_leader_election_last_renew_timestamp_seconds", lease},
			{"incluster_leader_election_transitions_total", lease},
			{"incluster_preflight_missing_rules", ""},
			{"go_goroutines", ""},
			{"process_resident_memory_bytes", ""},
		} {
			if _, ok := sample(body, s.name, s.labels); !ok {
				t.Errorf("the leader's /metrics has no %s{%s}", s.name, s.labels)
			}
		}
		if v, ok := sample(body, "incluster_leader_election_last_renew_timestamp_seconds", lease); ok {
			age := lines[0].Time.Sub(time.UnixMilli(int64(v * 1000)))
			t.Logf("the leader renewed %.1f s before the scrape", age.Seconds())
			if age > 5*time.Second {
				t.Errorf("the last renew was %.1f s before the scrape, want within 5 s (--retry-period=1s)", age.Seconds())
			}
		}
		reconciles, _ = sample(body, reconcileTotal, loop, `result="success"`)
		t.Logf("scraped the leader %s (%d bytes), the standby %s and the Service: 200, %s 1 and 0", leader, len(body), standby, leaderGauge)
	})

	t.Run("reconcile_counter", func(t *testing.T) {
		e := e.in(t)
		created := time.Now()
		if _, err := client.CoreV1().ConfigMaps(e.ns).Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: "counted", Labels: map[string]string{hashLabel: "true"}}, Data: map[string]string{"a": "b"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		e.waitHash("counted", created, 30*time.Second)
		lines := e.runScrape(t, "scraper", metricsURL(eps[leader]))
		after, ok := sample(lines[0].Body, reconcileTotal, loop, `result="success"`)
		t.Logf("%s{%s,result=\"success\"}: %v before the labelled ConfigMap, %v after", reconcileTotal, loop, reconciles, after)
		if !ok || after <= reconciles {
			t.Errorf("the reconcile counter did not grow: %v before, %v after (present %v)", reconciles, after, ok)
		}
	})

	t.Run("refused", func(t *testing.T) {
		for _, c := range []struct {
			sa   string
			want int
		}{{"", 401}, {"nobody", 403}} {
			lines := e.runScrape(t, c.sa, metricsURL(eps[leader]))
			if len(lines) != 1 || lines[0].Status != c.want {
				t.Errorf("service account %q: %+v, want %d", c.sa, lines, c.want)
				continue
			}
			t.Logf("service account %q: %d %s", c.sa, lines[0].Status, firstLine(lines[0].Body))
		}
	})

	t.Run("certificate_reload", func(t *testing.T) {
		e := e.in(t)
		crt, key, fp2 := servingCert(t, ca, svcName)
		secret.Data = map[string][]byte{corev1.TLSCertKey: crt, corev1.TLSPrivateKeyKey: key}
		if _, err := client.CoreV1().Secrets(e.ns).Update(ctx, secret, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		updated := time.Now()
		// A pod's update makes the kubelet sync it now, and write the
		// Secret's new files, instead of at its next periodic sync (up to a
		// minute).
		for _, p := range e.pods(ctx) {
			patch := fmt.Sprintf(`{"metadata":{"annotations":{"incluster.dev/e2e-resync":%q}}}`, updated.Format(time.RFC3339Nano))
			if _, err := client.CoreV1().Pods(e.ns).Patch(ctx, p.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		lines := e.runScrape(t, "scraper", "-repeat", "90", "-interval", "1s", "-until-fingerprint", fp2, metricsURL(eps[leader]))
		var served time.Time
		for _, l := range lines {
			if l.Fingerprint == fp2 && l.Status == 200 {
				served = l.Time
				break
			}
		}
		if served.IsZero() {
			t.Fatalf("the leader still serves %.12s, %d scrapes after the Secret changed; want %.12s", lines[len(lines)-1].Fingerprint, len(lines), fp2)
		}
		// When the kubelet wrote the files, and when the controller served
		// them: its log line says both.
		var changed, logged time.Time
		for _, l := range strings.Split(e.logs(ctx, leader), "\n") {
			if !strings.Contains(l, "metrics: serving the new certificate") || !strings.Contains(l, fp2) {
				continue
			}
			logged, _ = logTime(l)
			if _, v, ok := strings.Cut(l, "filesChanged="); ok {
				changed, _ = time.Parse(time.RFC3339Nano, strings.Fields(v)[0])
			}
		}
		if logged.IsZero() || changed.IsZero() {
			t.Fatalf("the leader's log has no \"serving the new certificate\" line with filesChanged for %.12s", fp2)
		}
		delay := logged.Sub(changed)
		t.Logf("Secret updated; the kubelet wrote the files %.1f s later; the controller served them %.1f s after that; a scraper saw it %.1f s after the update; restarts %d",
			changed.Sub(updated).Seconds(), delay.Seconds(), served.Sub(updated).Seconds(), restartsNow(t, e))
		if delay > 10*time.Second {
			t.Errorf("the new certificate was served %.1f s after its files changed, want within 10 s", delay.Seconds())
		}
		if n := restartsNow(t, e); n != 0 {
			t.Errorf("%d container restarts, want none (reloaded in place)", n)
		}
	})

	t.Run("handoff", func(t *testing.T) {
		e := e.in(t)
		if err := client.CoreV1().Pods(e.ns).Delete(ctx, leader, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		holder, _ := e.waitHolder(time.Minute, func(h string) bool { return podOf(h) == standby })
		e.waitReady(2, 2*time.Minute)
		eps := e.metricsEndpoints(t, 2)
		var urls, pods []string
		for p, ip := range eps {
			urls, pods = append(urls, metricsURL(ip)), append(pods, p)
		}
		lines := e.runScrape(t, "scraper", urls...)
		for i, l := range lines {
			want := 0.0
			if pods[i] == podOf(holder) {
				want = 1
			}
			v, ok := sample(l.Body, leaderGauge, lease)
			t.Logf("after the handoff: %s %s{%s} = %v", pods[i], leaderGauge, lease, v)
			if l.Status != 200 || !ok || v != want {
				t.Errorf("%s after the handoff: status %d, %s = %v (present %v), want %v", pods[i], l.Status, leaderGauge, v, ok, want)
			}
		}
	})
}

func restartsNow(t *testing.T, e *controllerEnv) int32 {
	var n int32
	for _, p := range e.pods(t.Context()) {
		n += restarts(&p)
	}
	return n
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

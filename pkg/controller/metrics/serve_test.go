// SPDX-License-Identifier: Apache-2.0

package metrics

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/incluster/incluster/internal/testca"
	"github.com/incluster/incluster/pkg/controller"
)

// reviewer is a fake API server's TokenReview and SubjectAccessReview:
// token "reader" is user alice, who may get /metrics; token "other" is
// bob, who may not; any other token is not valid.
func reviewer(t *testing.T) (*fake.Clientset, *atomic.Int32) {
	cs := fake.NewClientset()
	var reviews atomic.Int32
	cs.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		reviews.Add(1)
		tr := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenReview).DeepCopy()
		switch tr.Spec.Token {
		case "reader":
			tr.Status = authenticationv1.TokenReviewStatus{Authenticated: true, User: authenticationv1.UserInfo{Username: "alice", Groups: []string{"g"}}}
		case "other":
			tr.Status = authenticationv1.TokenReviewStatus{Authenticated: true, User: authenticationv1.UserInfo{Username: "bob"}}
		}
		return true, tr, nil
	})
	cs.PrependReactor("create", "subjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		sar := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SubjectAccessReview).DeepCopy()
		nr := sar.Spec.NonResourceAttributes
		sar.Status.Allowed = sar.Spec.User == "alice" && nr != nil && nr.Path == "/metrics" && nr.Verb == "get" && len(sar.Spec.Groups) == 1
		return true, sar, nil
	})
	return cs, &reviews
}

func serve(t *testing.T, x *Metrics, cs *fake.Clientset) string {
	t.Helper()
	stop, err := x.Serve(t.Context(), controller.MetricsServing{
		Log: slog.New(slog.DiscardHandler), TokenReviews: cs.AuthenticationV1(), SubjectAccessReviews: cs.AuthorizationV1(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return x.addr.Load().(string)
}

// scrape GETs url with token ("" none), skipping verification, and returns
// the status, the body and the served certificate's fingerprint.
func scrape(t *testing.T, url, token string) (int, string, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fp := ""
	if resp.TLS != nil {
		fp = Fingerprint(resp.TLS.PeerCertificates[0].Raw)
	}
	return resp.StatusCode, string(body), fp
}

func TestServeAuthenticatesAndAuthorizes(t *testing.T) {
	cs, reviews := reviewer(t)
	x := New(WithAddress("127.0.0.1:0"))
	x.Leading("lease", false)
	url := "https://" + serve(t, x, cs) + "/metrics"
	for _, c := range []struct {
		token string
		want  int
	}{{"", 401}, {"nonsense", 401}, {"other", 403}, {"reader", 200}, {"reader", 200}} {
		code, body, _ := scrape(t, url, c.token)
		if code != c.want {
			t.Errorf("token %q: %d %s, want %d", c.token, code, body, c.want)
		}
		if code == 200 && !strings.Contains(body, `leader_election_master_status{name="lease"} 0`) {
			t.Errorf("token %q: the body has no leader_election_master_status:\n%.500s", c.token, body)
		}
		if code == 403 && !strings.Contains(body, "nonResourceURLs") {
			t.Errorf("the 403 does not say which rule to bind: %s", body)
		}
	}
	if n := reviews.Load(); n != 3 {
		t.Errorf("%d TokenReviews for 3 tokens, the valid one twice: want 3 (its answer kept)", n)
	}
	if code, _, _ := scrape(t, "https://"+x.addr.Load().(string)+"/other", "reader"); code != 404 {
		t.Errorf("/other: %d, want 404", code)
	}
}

func TestServeInsecure(t *testing.T) {
	cs, reviews := reviewer(t)
	x := New(WithAddress("127.0.0.1:0"), WithInsecureServing())
	code, body, _ := scrape(t, "http://"+serve(t, x, cs)+"/metrics", "")
	if code != 200 || !strings.Contains(body, "go_goroutines") {
		t.Errorf("plain HTTP without a token: %d %.200s; want 200 and the metrics", code, body)
	}
	if reviews.Load() != 0 {
		t.Errorf("insecure serving asked for TokenReviews")
	}
}

// writeCert writes a new certificate of ca and its key to dir, replacing
// the files as the kubelet does (a new file renamed over the old one), and
// returns its fingerprint.
func writeCert(t *testing.T, ca *testca.CA, dir string) string {
	t.Helper()
	leaf := ca.Leaf(t)
	crt, key := testca.PEM(t, leaf)
	testca.WriteFile(t, filepath.Join(dir, CertFile), crt)
	testca.WriteFile(t, filepath.Join(dir, KeyFile), key)
	return Fingerprint(leaf.Certificate[0])
}

// TestServeReloadsCertificate: files replaced -> the new certificate served
// within a few poll intervals, by the same server.
func TestServeReloadsCertificate(t *testing.T) {
	dir := t.TempDir()
	ca := testca.NewCA(t, "metrics test CA")
	first := writeCert(t, ca, dir)
	cs, _ := reviewer(t)
	x := New(WithAddress("127.0.0.1:0"), WithCertDir(dir))
	url := "https://" + serve(t, x, cs) + "/metrics"
	if _, _, fp := scrape(t, url, "reader"); fp != first {
		t.Fatalf("served %s, want the directory's %s", fp, first)
	}
	second := writeCert(t, ca, dir)
	start := time.Now()
	for {
		_, _, fp := scrape(t, url, "reader")
		if fp == second {
			t.Logf("the new certificate served after %s", time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Since(start) > 4*certPollInterval {
			t.Fatalf("still serving %s %s after the files were replaced, want %s", fp, time.Since(start), second)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestServeBadCertDir(t *testing.T) {
	cs, _ := reviewer(t)
	x := New(WithAddress("127.0.0.1:0"), WithCertDir(t.TempDir()))
	_, err := x.Serve(t.Context(), controller.MetricsServing{TokenReviews: cs.AuthenticationV1(), SubjectAccessReviews: cs.AuthorizationV1()})
	if err == nil || !strings.Contains(err.Error(), "tls.crt") {
		t.Fatalf("Serve with an empty cert dir: %v; want an error naming tls.crt", err)
	}
}

// SPDX-License-Identifier: Apache-2.0

package app

import (
	"errors"
	"testing"

	"k8s.io/client-go/rest"

	"github.com/incluster/incluster/pkg/incluster"
	"github.com/incluster/incluster/pkg/serviceaccount"
)

// TestExitCodeConfigErrors: every configuration problem the library reports
// is a *ConfigError, so the demo exits 3 for it (not 4, "the API server
// refused"), whichever function found it.
func TestExitCodeConfigErrors(t *testing.T) {
	errOf := func(_ any, err error) error { return err }
	for name, err := range map[string]error{
		"NewForConfig, invalid namespace": errOf(incluster.NewForConfig(&rest.Config{Host: "https://127.0.0.1:6443"}, "Bad_NS")),
		"NewForConfig, empty namespace":   errOf(incluster.NewForConfig(&rest.Config{Host: "https://127.0.0.1:6443"}, "")),
		"ParseCA":                         errOf(serviceaccount.ParseCA([]byte("garbage"))),
		"ValidateNamespace":               serviceaccount.ValidateNamespace("-bad-"),
		"New, kubeconfig and proxy":       errOf(incluster.New(incluster.WithKubeconfig(""), incluster.WithProxy("http://127.0.0.1:8001"))),
		"New, QPS 0":                      errOf(incluster.New(incluster.WithProxy("http://127.0.0.1:8001"), incluster.WithRateLimit(0, 10))),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		if got := exitCode(err); got != ExitConfig {
			t.Errorf("%s: exit code %d for %q (%T), want %d", name, got, err, err, ExitConfig)
		}
	}
	if got := exitCode(errors.New("GET /api: connection refused")); got != ExitAPI {
		t.Errorf("an API failure: exit code %d, want %d", got, ExitAPI)
	}
}

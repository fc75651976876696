// SPDX-License-Identifier: Apache-2.0

package app

import "testing"

// TestReportOneConnection: a full report sends its four requests
// concurrently over one TLS connection (HTTP/2) and asks nothing beyond them
// (no discovery); --api-versions-only sends one request.
func TestReportOneConnection(t *testing.T) {
	notInPod(t)
	for _, tt := range []struct {
		args     []string
		requests int32
	}{
		{nil, 4},
		{[]string{"--read-pods=demo-ns"}, 5},
		{[]string{"--api-versions-only"}, 1},
	} {
		// A new server each time: client-go shares TLS transports between
		// clients of the same server in a process.
		f, _, kubeconfig, _ := startAPI(t)
		code, _, errOut := run(t, t.Context(), append([]string{"--kubeconfig", kubeconfig, "-o", "json"}, tt.args...)...)
		if code != ExitOK {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		if n := f.requests.Load(); n != tt.requests {
			t.Errorf("%v: %d requests for a report, want %d", tt.args, n, tt.requests)
		}
		if n := f.conns.Load(); n != 1 {
			t.Errorf("%v: %d connections for a report, want 1", tt.args, n)
		}
	}
}

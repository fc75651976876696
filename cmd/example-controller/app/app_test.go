// SPDX-License-Identifier: Apache-2.0

package app

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// kubeconfig writes a kubeconfig for an unreachable server with namespace
// app, so that Run gets past the client and stops at what a test checks.
func kubeconfig(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kubeconfig")
	const doc = `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: not-a-real-token}}]
contexts: [{name: x, context: {cluster: c, user: u, namespace: app}}]
current-context: x
`
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRunExitCodes(t *testing.T) {
	for _, k := range []string{"KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "POD_NAMESPACE", "KUBECONFIG"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	kc := kubeconfig(t)
	tests := []struct {
		name       string
		args       []string
		code       int
		stdout     string
		stderrHas  string
		stderrLack string
	}{
		{name: "help", args: []string{"--help"}, code: ExitOK, stdout: usageText},
		{name: "unknown flag", args: []string{"--nope"}, code: ExitUsage, stderrHas: "flag provided but not defined: -nope; see example-controller --help"},
		{name: "argument", args: []string{"x"}, code: ExitUsage, stderrHas: `unexpected argument "x"`},
		{name: "workers", args: []string{"--workers=0"}, code: ExitUsage, stderrHas: "--workers=0: want at least 1"},
		{name: "log format", args: []string{"--log-format=xml"}, code: ExitUsage, stderrHas: `--log-format="xml": want text or json`},
		{name: "not in a cluster", code: ExitConfig, stderrHas: "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT: not set",
			stderrLack: "WithKubeconfig"},
		{name: "not in a cluster: the flag's fix", code: ExitConfig, stderrHas: "; " + fixNotInPod},
		{name: "lease vs renew", args: []string{"--kubeconfig=" + kc, "--lease-duration=5s"}, code: ExitUsage,
			stderrHas: "the lease duration (5s) must be longer than the renew deadline (10s)"},
		{name: "lease name", args: []string{"--kubeconfig=" + kc, "--lease-name=Bad_Name"}, code: ExitUsage, stderrHas: `lease name "Bad_Name"`,
			stderrLack: "not-a-real-token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Run(context.Background(), tt.args, &stdout, &stderr)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.code, stderr.String())
			}
			if tt.stdout != "" && stdout.String() != tt.stdout {
				t.Errorf("stdout:\n%s", stdout.String())
			}
			if !strings.Contains(stderr.String(), tt.stderrHas) {
				t.Errorf("stderr lacks %q:\n%s", tt.stderrHas, stderr.String())
			}
			if tt.stderrLack != "" && strings.Contains(stderr.String(), tt.stderrLack) {
				t.Errorf("stderr has %q", tt.stderrLack)
			}
		})
	}
}

// Stopped before it started (SIGTERM during the preflight): exit 0.
func TestRunCancelled(t *testing.T) {
	t.Setenv("POD_NAMESPACE", "")
	os.Unsetenv("POD_NAMESPACE")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var stdout, stderr bytes.Buffer
	if code := Run(ctx, []string{"--kubeconfig=" + kubeconfig(t), "--probe-address=0"}, &stdout, &stderr); code != ExitOK {
		t.Errorf("exit %d, want 0; stderr:\n%s", code, stderr.String())
	}
}

// deploy/controller's Role is what --print-role prints: the permissions are
// written once, in the program.
func TestRoleMatchesDeploy(t *testing.T) {
	for _, tt := range []struct{ args, file string }{
		{"--print-role", "deploy/controller/role.yaml"},
		{"--bundles --print-role", "deploy/bundles/role.yaml"},
		{"--shards=16 --print-role", "deploy/controller-sharded/role.yaml"},
	} {
		var stdout, stderr bytes.Buffer
		if code := Run(context.Background(), strings.Fields(tt.args), &stdout, &stderr); code != ExitOK {
			t.Fatalf("%s: exit %d; stderr:\n%s", tt.args, code, stderr.String())
		}
		want, err := os.ReadFile(filepath.Join("..", "..", "..", tt.file))
		if err != nil {
			t.Fatal(err)
		}
		if stdout.String() != string(want) {
			t.Errorf("%s differs from example-controller %s; update it with:\n  go run ./cmd/example-controller %s > %s\nprinted:\n%s", tt.file, tt.args, tt.args, tt.file, stdout.String())
		}
	}
}

// SPDX-License-Identifier: Apache-2.0

package incluster

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/incluster/incluster/pkg/serviceaccount"
)

// wantConfigError checks that err is a *ConfigError whose message contains
// every string of want, and returns it.
func wantConfigError(t *testing.T, err error, want ...string) *ConfigError {
	t.Helper()
	if err == nil {
		t.Fatalf("err = nil, want a *ConfigError containing %q", want)
	}
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v (%T), want a *ConfigError", err, err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("err = %q\nwant it to contain %q", err, w)
		}
	}
	if strings.Contains(err.Error(), testToken) {
		t.Errorf("err contains the token: %q", err)
	}
	return ce
}

func TestInClusterConfig(t *testing.T) {
	brokenCert := "-----BEGIN CERTIFICATE-----\nTm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
	tests := []struct {
		name       string
		host, port *string // nil: unset
		mount      func(m *saMount)
		load       func() (*rest.Config, error) // nil: the fake rest.InClusterConfig

		wantHost         string   // on success
		wantErr          []string // substrings of the error; nil: success
		wantSource       string   // ConfigError.Source; a leading "/" means relative to the SA dir
		wantNotInCluster bool
	}{
		{name: "ok", host: ptr("10.96.0.1"), port: ptr("443"), wantHost: "https://10.96.0.1:443"},
		{name: "DNS name", host: ptr("kubernetes.default.svc"), port: ptr("443"), wantHost: "https://kubernetes.default.svc:443"},
		{name: "IPv6 host", host: ptr("fd00:10:96::1"), port: ptr("443"), wantHost: "https://[fd00:10:96::1]:443"},
		{name: "IPv6 loopback", host: ptr("::1"), port: ptr("6443"), wantHost: "https://[::1]:6443"},
		{
			name:    "env unset",
			wantErr: []string{"KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "not running in a Kubernetes pod", "incluster.WithKubeconfig(path)"},
			// Source names both variables.
			wantSource: "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT", wantNotInCluster: true,
		},
		{
			name: "env set to empty strings", host: ptr(""), port: ptr(""),
			wantErr: []string{"KUBERNETES_SERVICE_HOST", "incluster.WithKubeconfig(path)"}, wantSource: "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT", wantNotInCluster: true,
		},
		{
			name: "port only", port: ptr("443"),
			wantErr: []string{"KUBERNETES_SERVICE_HOST", "not set while KUBERNETES_SERVICE_PORT is", "set both"}, wantSource: "KUBERNETES_SERVICE_HOST", wantNotInCluster: true,
		},
		{
			name: "host only", host: ptr("10.96.0.1"),
			wantErr: []string{"KUBERNETES_SERVICE_PORT", "not set while KUBERNETES_SERVICE_HOST is", "set both"}, wantSource: "KUBERNETES_SERVICE_PORT", wantNotInCluster: true,
		},
		{
			name: "bracketed IPv6 host", host: ptr("[fd00::1]"), port: ptr("443"),
			wantErr: []string{"KUBERNETES_SERVICE_HOST", `"[fd00::1]" is neither an IP address nor a DNS name`}, wantSource: "KUBERNETES_SERVICE_HOST",
		},
		{
			name: "host with a scheme", host: ptr("https://10.96.0.1"), port: ptr("443"),
			wantErr: []string{"KUBERNETES_SERVICE_HOST", "neither an IP address nor a DNS name"}, wantSource: "KUBERNETES_SERVICE_HOST",
		},
		{
			name: "port not a number", host: ptr("10.96.0.1"), port: ptr("https"),
			wantErr: []string{"KUBERNETES_SERVICE_PORT", `"https" is not a port number`}, wantSource: "KUBERNETES_SERVICE_PORT",
		},
		{
			name: "port out of range", host: ptr("10.96.0.1"), port: ptr("65536"),
			wantErr: []string{"KUBERNETES_SERVICE_PORT", "not a port number (1-65535)"}, wantSource: "KUBERNETES_SERVICE_PORT",
		},
		{
			name: "token missing", host: ptr("10.96.0.1"), port: ptr("443"), mount: func(m *saMount) { m.Token = nil },
			wantErr: []string{"/token", "no service-account token is mounted", "automountServiceAccountToken"}, wantSource: "/token",
		},
		{
			name: "token empty", host: ptr("10.96.0.1"), port: ptr("443"), mount: func(m *saMount) { m.Token = []byte{} },
			wantErr: []string{"/token", "the service-account token file is empty", "automountServiceAccountToken"}, wantSource: "/token",
		},
		{
			name: "token only whitespace", host: ptr("10.96.0.1"), port: ptr("443"), mount: func(m *saMount) { m.Token = []byte(" \n\t\n") },
			wantErr: []string{"the service-account token file is empty"}, wantSource: "/token",
		},
		{
			name: "token with inner whitespace", host: ptr("10.96.0.1"), port: ptr("443"), mount: func(m *saMount) { m.Token = []byte(testToken + " " + testToken) },
			wantErr: []string{"does not hold a token"}, wantSource: "/token",
		},
		{
			name: "CA missing", host: ptr("10.96.0.1"), port: ptr("443"), mount: func(m *saMount) { m.CA = nil },
			wantErr: []string{"/ca.crt", "no cluster CA bundle is mounted", "kube-root-ca.crt"}, wantSource: "/ca.crt",
		},
		{
			name: "CA garbage", host: ptr("10.96.0.1"), port: ptr("443"), mount: func(m *saMount) { m.CA = []byte("this is not PEM\n") },
			wantErr: []string{"/ca.crt", "holds no PEM certificate", "kube-root-ca.crt"}, wantSource: "/ca.crt",
		},
		{
			name: "CA empty", host: ptr("10.96.0.1"), port: ptr("443"), mount: func(m *saMount) { m.CA = []byte{} },
			wantErr: []string{"/ca.crt", "holds no PEM certificate"}, wantSource: "/ca.crt",
		},
		{
			name: "CA with a broken certificate", host: ptr("10.96.0.1"), port: ptr("443"), mount: func(m *saMount) { m.CA = append(append([]byte{}, testCA...), brokenCert...) },
			wantErr: []string{"/ca.crt", "broken certificate"}, wantSource: "/ca.crt",
		},
		{
			name: "rest.InClusterConfig fails", host: ptr("10.96.0.1"), port: ptr("443"),
			load:    func() (*rest.Config, error) { return nil, errors.New("open token: permission denied") },
			wantErr: []string{"rest.InClusterConfig failed: open token: permission denied", "check the service-account mount"}, wantSource: "/",
		},
		{
			name: "rest.InClusterConfig drops the CA", host: ptr("10.96.0.1"), port: ptr("443"),
			load: func() (*rest.Config, error) {
				return &rest.Config{Host: "https://10.96.0.1:443", BearerToken: testToken}, nil
			},
			wantErr: []string{"/ca.crt", "could not load the CA bundle"}, wantSource: "/ca.crt",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := goodMount()
			if tt.mount != nil {
				tt.mount(&m)
			}
			dir := fakeServiceAccount(t, m)
			if tt.host != nil {
				t.Setenv(serviceaccount.HostEnv, *tt.host)
			}
			if tt.port != nil {
				t.Setenv(serviceaccount.PortEnv, *tt.port)
			}
			if tt.load != nil {
				loadInClusterConfig = tt.load
			}

			cfg, err := InClusterConfig()
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("InClusterConfig: %v", err)
				}
				if cfg.Host != tt.wantHost {
					t.Errorf("Host = %q, want %q", cfg.Host, tt.wantHost)
				}
				if want := filepath.Join(dir, "ca.crt"); cfg.CAFile != want {
					t.Errorf("CAFile = %q, want %q", cfg.CAFile, want)
				}
				return
			}
			if cfg != nil {
				t.Errorf("cfg = %+v, want nil with an error", cfg)
			}
			want := append([]string(nil), tt.wantErr...)
			source := tt.wantSource
			if strings.HasPrefix(source, "/") {
				source = filepath.Join(dir, source)
				if tt.wantSource == "/" {
					source = dir
				}
			}
			ce := wantConfigError(t, err, want...)
			if ce.Source != source {
				t.Errorf("Source = %q, want %q", ce.Source, source)
			}
			if ce.Fix == "" {
				t.Errorf("the error says nothing about what to do: %q", err)
			}
			if got := errors.Is(err, rest.ErrNotInCluster); got != tt.wantNotInCluster {
				t.Errorf("errors.Is(err, rest.ErrNotInCluster) = %v, want %v (err: %v)", got, tt.wantNotInCluster, err)
			}
		})
	}
}

// TestNewNotInCluster: New outside a pod says so in the two ways callers
// check, and tells what to do.
func TestNewNotInCluster(t *testing.T) {
	fakeServiceAccount(t, goodMount())
	c, err := New()
	if c != nil {
		t.Errorf("New() = %v, want nil", c)
	}
	wantConfigError(t, err, "KUBERNETES_SERVICE_HOST", "incluster.WithKubeconfig(path)")
	if !errors.Is(err, rest.ErrNotInCluster) {
		t.Errorf("errors.Is(err, rest.ErrNotInCluster) = false for %v", err)
	}
	if !errors.Is(err, serviceaccount.ErrNotInPod) {
		t.Errorf("errors.Is(err, serviceaccount.ErrNotInPod) = false for %v", err)
	}
}

// TestNotInPodFix: outside a pod, the error tells the program's author what
// the library offers (WithKubeconfig, KubeconfigConfig), not a command-line
// flag: the library reads no flag, and a kubeconfig only when asked to. The
// same holds for the kubeconfig errors, which WithKubeconfig leads to.
func TestNotInPodFix(t *testing.T) {
	fakeServiceAccount(t, goodMount())
	_, newErr := New()
	_, icErr := InClusterConfig()
	dir := t.TempDir()
	_, _, loadErr := KubeconfigConfig(filepath.Join(dir, "nope"))
	t.Setenv("KUBECONFIG", filepath.Join(dir, "nope"))
	_, noCtxErr := New(WithKubeconfig(""))
	for name, err := range map[string]error{"New()": newErr, "InClusterConfig()": icErr} {
		ce := wantConfigError(t, err, "not running in a Kubernetes pod", "run it in a pod",
			"incluster.WithKubeconfig(path)", "incluster.KubeconfigConfig(path)", "an empty path means $KUBECONFIG, then ~/.kube/config")
		if !errors.Is(err, serviceaccount.ErrServiceEnvUnset) {
			t.Errorf("%s: errors.Is(err, serviceaccount.ErrServiceEnvUnset) = false for %v", name, err)
		}
		if ce.Fix != fixNotInPod {
			t.Errorf("%s: Fix = %q, want %q", name, ce.Fix, fixNotInPod)
		}
	}
	for name, err := range map[string]error{"New()": newErr, "InClusterConfig()": icErr,
		"KubeconfigConfig(missing)": loadErr, "New(WithKubeconfig(\"\")) without a context": noCtxErr} {
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		if strings.Contains(err.Error(), "--kubeconfig") {
			t.Errorf("%s: the error names a flag the library does not have: %q", name, err)
		}
	}

	// One variable without the other is not "outside a cluster": keep "set both".
	setServiceEnv(t, "10.96.0.1", "")
	_, err := New()
	ce := wantConfigError(t, err, "set both")
	if strings.Contains(ce.Fix, "WithKubeconfig") || errors.Is(err, serviceaccount.ErrServiceEnvUnset) {
		t.Errorf("host only: %q (ErrServiceEnvUnset: %v)", err, errors.Is(err, serviceaccount.ErrServiceEnvUnset))
	}
}

func TestNewNamespace(t *testing.T) {
	tests := []struct {
		name       string
		file       []byte  // nil: no namespace file
		env        *string // nil: POD_NAMESPACE unset
		wantNS     string
		wantSource NamespaceSource
		wantErr    []string
	}{
		{name: "file", file: []byte("team-a"), wantNS: "team-a", wantSource: FromFile},
		{name: "file with newline", file: []byte("team-a\n"), wantNS: "team-a", wantSource: FromFile},
		{name: "file with spaces and CRLF", file: []byte("  team-a\r\n"), wantNS: "team-a", wantSource: FromFile},
		{name: "file missing", wantErr: []string{"/namespace", "no namespace file is mounted and POD_NAMESPACE is not set", "downward API"}},
		{name: "file empty", file: []byte{}, wantErr: []string{"/namespace", "the namespace is empty", "POD_NAMESPACE"}},
		{name: "file only a newline", file: []byte("\n"), wantErr: []string{"the namespace is empty"}},
		{name: "file invalid", file: []byte("Team_A"), wantErr: []string{"/namespace", `"Team_A" is not a valid namespace name`}},
		{name: "file with two lines", file: []byte("team-a\nteam-b\n"), wantErr: []string{"is not a valid namespace name"}},
		{name: "file too long", file: []byte(strings.Repeat("a", 64)), wantErr: []string{"is not a valid namespace name", "63"}},
		{name: "POD_NAMESPACE wins over the file", file: []byte("file-ns"), env: ptr("env-ns"), wantNS: "env-ns", wantSource: FromEnv},
		{name: "POD_NAMESPACE without a file", env: ptr("env-ns"), wantNS: "env-ns", wantSource: FromEnv},
		{name: "POD_NAMESPACE empty", file: []byte("file-ns"), env: ptr(""), wantErr: []string{"POD_NAMESPACE", "the namespace is empty", "metadata.namespace"}},
		{name: "POD_NAMESPACE with newline", file: []byte("file-ns"), env: ptr("env-ns\n"), wantErr: []string{"POD_NAMESPACE", "is not a valid namespace name"}},
		{name: "POD_NAMESPACE invalid, no fallback to the file", file: []byte("file-ns"), env: ptr("Env_NS"), wantErr: []string{"POD_NAMESPACE", `"Env_NS" is not a valid namespace name`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := goodMount()
			m.Namespace = tt.file
			dir := fakeServiceAccount(t, m)
			setServiceEnv(t, "10.96.0.1", "443")
			if tt.env != nil {
				t.Setenv(serviceaccount.PodNamespaceEnv, *tt.env)
			}
			c, err := New()
			if tt.wantErr != nil {
				want := make([]string, len(tt.wantErr))
				for i, w := range tt.wantErr {
					if strings.HasPrefix(w, "/") {
						w = filepath.Join(dir, w)
					}
					want[i] = w
				}
				wantConfigError(t, err, want...)
				if c != nil {
					t.Errorf("New() = %v with an error", c)
				}
				if strings.Contains(err.Error(), "default") {
					t.Errorf("the error mentions a default namespace: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if c.Namespace() != tt.wantNS || c.NamespaceSource() != tt.wantSource {
				t.Errorf("namespace %q from %q, want %q from %q", c.Namespace(), c.NamespaceSource(), tt.wantNS, tt.wantSource)
			}
		})
	}
}

func TestNewClientSettings(t *testing.T) {
	program := filepath.Base(os.Args[0])
	tests := []struct {
		name        string
		opts        []Option
		wantQPS     float32
		wantBurst   int
		wantUA      string // exact; empty: must name the program
		wantTimeout time.Duration
	}{
		{name: "defaults", wantQPS: -1, wantBurst: 0, wantTimeout: DefaultRequestTimeout},
		{name: "WithRateLimit", opts: []Option{WithRateLimit(20, 40)}, wantQPS: 20, wantBurst: 40, wantTimeout: DefaultRequestTimeout},
		{name: "WithRateLimit negative turns it off", opts: []Option{WithRateLimit(-1, 0)}, wantQPS: -1, wantTimeout: DefaultRequestTimeout},
		{name: "WithUserAgent", opts: []Option{WithUserAgent("my-controller/v1.2.0")}, wantQPS: -1, wantUA: "my-controller/v1.2.0", wantTimeout: DefaultRequestTimeout},
		{name: "WithRequestTimeout", opts: []Option{WithRequestTimeout(3 * time.Second)}, wantQPS: -1, wantTimeout: 3 * time.Second},
		{name: "WithRequestTimeout zero", opts: []Option{WithRequestTimeout(0)}, wantQPS: -1, wantTimeout: 0},
		{
			name:    "all, last wins",
			opts:    []Option{WithRateLimit(5, 10), WithUserAgent("a/1"), WithRequestTimeout(time.Second), WithRateLimit(50, 100), WithUserAgent("b/2")},
			wantQPS: 50, wantBurst: 100, wantUA: "b/2", wantTimeout: time.Second,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fakeServiceAccount(t, goodMount())
			setServiceEnv(t, "10.96.0.1", "443")
			c, err := New(tt.opts...)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			cfg := c.Config()
			if cfg.QPS != tt.wantQPS || cfg.Burst != tt.wantBurst {
				t.Errorf("QPS, Burst = %v, %v; want %v, %v", cfg.QPS, cfg.Burst, tt.wantQPS, tt.wantBurst)
			}
			if tt.wantUA != "" {
				if cfg.UserAgent != tt.wantUA {
					t.Errorf("UserAgent = %q, want %q", cfg.UserAgent, tt.wantUA)
				}
			} else if !strings.HasPrefix(cfg.UserAgent, program+"/") {
				t.Errorf("UserAgent = %q, want it to name the program %q", cfg.UserAgent, program)
			}
			if c.requestTimeout != tt.wantTimeout {
				t.Errorf("request timeout = %v, want %v", c.requestTimeout, tt.wantTimeout)
			}
			if cfg.Timeout != 0 {
				t.Errorf("rest.Config.Timeout = %v, want 0 (it would cut watches)", cfg.Timeout)
			}
			if c.Host() != "https://10.96.0.1:443" {
				t.Errorf("Host() = %q", c.Host())
			}
		})
	}
}

// TestNewRateLimitInvalid: a burst of 0 with rate limiting on is refused
// by client-go; New reports it as a configuration error. A QPS of 0 is
// refused too: client-go would read it as its default of 5 QPS, a limit
// nobody asked for.
func TestNewRateLimitInvalid(t *testing.T) {
	fakeServiceAccount(t, goodMount())
	setServiceEnv(t, "10.96.0.1", "443")
	_, err := New(WithRateLimit(5, 0))
	wantConfigError(t, err, "burst", "WithRateLimit")
	for _, burst := range []int{0, 1, 10, 100} {
		c, err := New(WithRateLimit(0, burst))
		if c != nil {
			t.Errorf("WithRateLimit(0, %d): a client with QPS %v, burst %d", burst, c.config.QPS, c.config.Burst)
		}
		wantConfigError(t, err, "WithRateLimit(0, ", "a QPS of 0", "client-go's default of 5")
	}
}

// TestConfigIsACopy: changing the returned config does not change the client's.
func TestConfigIsACopy(t *testing.T) {
	fakeServiceAccount(t, goodMount())
	setServiceEnv(t, "10.96.0.1", "443")
	c, err := New()
	if err != nil {
		t.Fatal(err)
	}
	c.Config().Host = "https://example.com"
	if c.Host() != "https://10.96.0.1:443" {
		t.Errorf("Host() = %q after changing a copy", c.Host())
	}
}

func TestNewKubeconfigAndProxyExclusive(t *testing.T) {
	forbidInCluster(t)
	for _, opts := range [][]Option{
		{WithKubeconfig(""), WithProxy("http://127.0.0.1:8001")},
		{WithProxy("http://127.0.0.1:8001"), WithKubeconfig("/some/kubeconfig")},
	} {
		c, err := New(opts...)
		if err == nil || c != nil {
			t.Fatalf("New = %v, %v; want an error", c, err)
		}
		// A configuration error like the others (the demo: exit 3).
		wantConfigError(t, err, "WithKubeconfig", "WithProxy", "exclude each other")
	}
}

func TestKubeconfigConfig(t *testing.T) {
	const server = "https://127.0.0.1:6443"
	type files struct{ explicit, env string } // env: $KUBECONFIG, may be a list
	tests := []struct {
		name       string
		setup      func(t *testing.T, dir string) files
		wantHost   string
		wantNS     string
		wantToken  string
		wantErr    []string // "@" is replaced by the temp dir
		wantSource string   // "@" is replaced by the temp dir
	}{
		{
			name: "explicit path",
			setup: func(t *testing.T, dir string) files {
				return files{explicit: writeFile(t, dir+"/a", kubeconfigYAML(server, testCA, "tok-a", "ns-a"))}
			},
			wantHost: server, wantNS: "ns-a", wantToken: "tok-a",
		},
		{
			name: "explicit path wins over $KUBECONFIG",
			setup: func(t *testing.T, dir string) files {
				return files{
					explicit: writeFile(t, dir+"/a", kubeconfigYAML(server, testCA, "tok-a", "ns-a")),
					env:      writeFile(t, dir+"/b", kubeconfigYAML("https://127.0.0.2:6443", testCA, "tok-b", "ns-b")),
				}
			},
			wantHost: server, wantNS: "ns-a", wantToken: "tok-a",
		},
		{
			name: "$KUBECONFIG",
			setup: func(t *testing.T, dir string) files {
				return files{env: writeFile(t, dir+"/b", kubeconfigYAML(server, testCA, "tok-b", "ns-b"))}
			},
			wantHost: server, wantNS: "ns-b", wantToken: "tok-b",
		},
		{
			name: "$KUBECONFIG list, merged",
			setup: func(t *testing.T, dir string) files {
				// The first file sets current-context; the second defines it.
				first := writeFile(t, dir+"/first", "apiVersion: v1\nkind: Config\ncurrent-context: test\n")
				second := writeFile(t, dir+"/second", kubeconfigYAML(server, testCA, "tok-2", "ns-2"))
				return files{env: first + string(os.PathListSeparator) + dir + "/missing" + string(os.PathListSeparator) + second}
			},
			wantHost: server, wantNS: "ns-2", wantToken: "tok-2",
		},
		{
			name: "context without namespace",
			setup: func(t *testing.T, dir string) files {
				return files{explicit: writeFile(t, dir+"/a", kubeconfigYAML(server, testCA, "tok-a", ""))}
			},
			wantHost: server, wantNS: "", wantToken: "tok-a",
		},
		{
			name:       "explicit path missing",
			setup:      func(t *testing.T, dir string) files { return files{explicit: dir + "/nope"} },
			wantErr:    []string{"@/nope", "cannot load the kubeconfig", "no such file", "pass the path of a readable kubeconfig"},
			wantSource: "@/nope",
		},
		{
			name:       "$KUBECONFIG missing",
			setup:      func(t *testing.T, dir string) files { return files{env: dir + "/nope"} },
			wantErr:    []string{"$KUBECONFIG (@/nope)", "no kubeconfig with a context found", "pass the path of a kubeconfig with a context"},
			wantSource: "$KUBECONFIG (@/nope)",
		},
		{
			name:    "not YAML",
			setup:   func(t *testing.T, dir string) files { return files{explicit: writeFile(t, dir+"/a", "{{{ not yaml")} },
			wantErr: []string{"@/a", "cannot load the kubeconfig"}, wantSource: "@/a",
		},
		{
			name: "no current context",
			setup: func(t *testing.T, dir string) files {
				y := strings.Replace(kubeconfigYAML(server, testCA, "t", "ns"), "current-context: test\n", "", 1)
				return files{explicit: writeFile(t, dir+"/a", y)}
			},
			wantErr: []string{`the current context "" does not exist`, "kubectl config use-context"}, wantSource: "@/a",
		},
		{
			name: "current context does not exist",
			setup: func(t *testing.T, dir string) files {
				y := strings.Replace(kubeconfigYAML(server, testCA, "t", "ns"), "current-context: test", "current-context: prod", 1)
				return files{explicit: writeFile(t, dir+"/a", y)}
			},
			wantErr: []string{`the current context "prod" does not exist`}, wantSource: "@/a",
		},
		{
			name: "context names a missing cluster",
			setup: func(t *testing.T, dir string) files {
				y := strings.Replace(kubeconfigYAML(server, testCA, "t", "ns"), "    cluster: test\n", "    cluster: gone\n", 1)
				return files{explicit: writeFile(t, dir+"/a", y)}
			},
			wantErr: []string{"the kubeconfig is invalid", "kubectl config view"}, wantSource: "@/a",
		},
		{
			name: "no contexts",
			setup: func(t *testing.T, dir string) files {
				return files{explicit: writeFile(t, dir+"/a", "apiVersion: v1\nkind: Config\n")}
			},
			wantErr: []string{"@/a", "no kubeconfig with a context found"}, wantSource: "@/a",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The in-cluster configuration is complete and valid: KubeconfigConfig must not fall back to it.
			fakeServiceAccount(t, goodMount())
			setServiceEnv(t, "10.96.0.1", "443")
			loadInClusterConfig = func() (*rest.Config, error) {
				t.Error("the in-cluster config was loaded")
				return inClusterConfigFrom(serviceAccountDir)
			}
			dir := t.TempDir()
			f := tt.setup(t, dir)
			if f.env != "" {
				t.Setenv("KUBECONFIG", f.env)
			}
			cfg, ns, err := KubeconfigConfig(f.explicit)
			if tt.wantErr != nil {
				want := make([]string, len(tt.wantErr))
				for i, w := range tt.wantErr {
					want[i] = strings.ReplaceAll(w, "@", dir)
				}
				ce := wantConfigError(t, err, want...)
				if src := strings.ReplaceAll(tt.wantSource, "@", dir); ce.Source != src {
					t.Errorf("Source = %q, want %q", ce.Source, src)
				}
				if cfg != nil {
					t.Errorf("cfg = %+v with an error", cfg)
				}
				return
			}
			if err != nil {
				t.Fatalf("KubeconfigConfig: %v", err)
			}
			if cfg.Host != tt.wantHost || ns != tt.wantNS || cfg.BearerToken != tt.wantToken {
				t.Errorf("host %q, namespace %q, token %q; want %q, %q, %q", cfg.Host, ns, cfg.BearerToken, tt.wantHost, tt.wantNS, tt.wantToken)
			}
			if strings.Contains(cfg.Host, "10.96.0.1") || strings.Contains(cfg.BearerTokenFile, serviceAccountDir) {
				t.Errorf("the in-cluster config leaked in: %+v", cfg)
			}
		})
	}
}

// homeChildEnv marks the child process of TestKubeconfigHome.
const homeChildEnv = "INCLUSTER_TEST_HOME_CHILD"

// TestKubeconfigHome: without a path or $KUBECONFIG, KubeconfigConfig reads
// ~/.kube/config. client-go computes that path from $HOME once, when
// clientcmd is initialized, so the test runs in a child process that starts
// with HOME set to a temp dir.
func TestKubeconfigHome(t *testing.T) {
	for _, tt := range []struct {
		name   string
		config string // ~/.kube/config; empty: none
		want   string // in the child's output
	}{
		{name: "present", config: kubeconfigYAML("https://127.0.0.1:6443", testCA, "tok-home", "ns-home"), want: "host=https://127.0.0.1:6443 ns=ns-home"},
		{name: "missing", want: "err=@/.kube/config: no kubeconfig with a context found"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			home := t.TempDir()
			if tt.config != "" {
				writeFile(t, filepath.Join(home, ".kube", "config"), tt.config)
			}
			cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestKubeconfigHomeChild$", "-test.count=1", "-test.v")
			cmd.Env = []string{"HOME=" + home, homeChildEnv + "=1",
				serviceaccount.HostEnv + "=10.96.0.1", serviceaccount.PortEnv + "=443"}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("child: %v\n%s", err, out)
			}
			if want := strings.ReplaceAll(tt.want, "@", home); !strings.Contains(string(out), want) {
				t.Errorf("child output:\n%s\nwant it to contain %q", out, want)
			}
		})
	}
}

func TestKubeconfigHomeChild(t *testing.T) {
	if os.Getenv(homeChildEnv) == "" {
		t.Skip("run by TestKubeconfigHome")
	}
	serviceAccountDir = t.TempDir()
	loadInClusterConfig = func() (*rest.Config, error) {
		t.Error("the in-cluster config was loaded")
		return nil, rest.ErrNotInCluster
	}
	cfg, ns, err := KubeconfigConfig("")
	if err != nil {
		t.Logf("err=%v", err)
		return
	}
	t.Logf("host=%s ns=%s", cfg.Host, ns)
}

// TestNewKubeconfigNamespace: with WithKubeconfig the namespace is
// POD_NAMESPACE if set, else the current context's; never "default".
func TestNewKubeconfigNamespace(t *testing.T) {
	tests := []struct {
		name       string
		contextNS  string
		env        *string
		wantNS     string
		wantSource NamespaceSource
		wantErr    []string
	}{
		{name: "context", contextNS: "ctx-ns", wantNS: "ctx-ns", wantSource: FromKubeconfig},
		{name: "POD_NAMESPACE wins", contextNS: "ctx-ns", env: ptr("env-ns"), wantNS: "env-ns", wantSource: FromEnv},
		{name: "POD_NAMESPACE without a context namespace", env: ptr("env-ns"), wantNS: "env-ns", wantSource: FromEnv},
		{name: "no namespace anywhere", wantErr: []string{"kubeconfig", "sets no namespace", "POD_NAMESPACE", "kubectl config set-context --current --namespace"}},
		{name: "invalid context namespace", contextNS: "Bad_NS", wantErr: []string{"kubeconfig", `"Bad_NS" is not a valid namespace name`}},
		{name: "invalid POD_NAMESPACE", contextNS: "ctx-ns", env: ptr("bad ns"), wantErr: []string{"POD_NAMESPACE", "is not a valid namespace name"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			forbidInCluster(t)
			path := writeFile(t, filepath.Join(t.TempDir(), "config"), kubeconfigYAML("https://127.0.0.1:6443", testCA, "tok", tt.contextNS))
			if tt.env != nil {
				t.Setenv(serviceaccount.PodNamespaceEnv, *tt.env)
			}
			c, err := New(WithKubeconfig(path))
			if tt.wantErr != nil {
				wantConfigError(t, err, tt.wantErr...)
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if c.Namespace() != tt.wantNS || c.NamespaceSource() != tt.wantSource {
				t.Errorf("namespace %q from %q, want %q from %q", c.Namespace(), c.NamespaceSource(), tt.wantNS, tt.wantSource)
			}
			if c.Host() != "https://127.0.0.1:6443" {
				t.Errorf("Host() = %q", c.Host())
			}
			if cfg := c.Config(); cfg.QPS != DefaultQPS {
				t.Errorf("QPS = %v, want %v with a kubeconfig too", cfg.QPS, DefaultQPS)
			}
		})
	}
}

func TestProxyConfig(t *testing.T) {
	tests := []struct {
		url      string
		wantHost string   // on success
		wantErr  []string // nil: success
	}{
		{url: "http://127.0.0.1:8001", wantHost: "http://127.0.0.1:8001"},
		{url: "http://127.0.0.1:8001/", wantHost: "http://127.0.0.1:8001"},
		{url: "http://127.0.0.1", wantHost: "http://127.0.0.1"},
		{url: "http://127.0.0.2:8001", wantHost: "http://127.0.0.2:8001"},
		{url: "http://localhost:8001", wantHost: "http://localhost:8001"},
		{url: "http://[::1]:8001", wantHost: "http://[::1]:8001"},
		{url: "http://[::ffff:127.0.0.1]:8001", wantHost: "http://[::ffff:127.0.0.1]:8001"},
		{url: "HTTP://127.0.0.1:8001", wantHost: "http://127.0.0.1:8001"},

		// kubectl proxy serves plain HTTP only.
		{url: "https://127.0.0.1:8001", wantErr: []string{"not an http:// URL of a kubectl proxy", "http://127.0.0.1:8001"}},
		{url: "http://10.0.0.5:8001", wantErr: []string{"not a loopback address", "kubectl proxy"}},
		{url: "http://0.0.0.0:8001", wantErr: []string{"not a loopback address"}},
		{url: "http://[::]:8001", wantErr: []string{"not a loopback address"}},
		{url: "http://example.com:8001", wantErr: []string{"not a loopback address"}},
		{url: "http://localhost.example.com:8001", wantErr: []string{"not a loopback address"}},
		{url: "http://kubernetes.default.svc", wantErr: []string{"not a loopback address"}},
		{url: "127.0.0.1:8001", wantErr: []string{"not an http:// URL"}},
		{url: "localhost:8001", wantErr: []string{"not an http:// URL"}},
		{url: "http://", wantErr: []string{"not an http:// URL"}},
		{url: "http:///api", wantErr: []string{"not an http:// URL"}},
		{url: "", wantErr: []string{"not an http:// URL"}},
		{url: "::not a url::", wantErr: []string{"not an http:// URL"}},
		{url: "http://%zz:8001", wantErr: []string{"not an http:// URL"}},
		{url: "unix:///run/proxy.sock", wantErr: []string{"not an http:// URL"}},
		{url: "http://LOCALHOST:8001", wantHost: "http://LOCALHOST:8001"},
		{url: "http://localhost.:8001", wantHost: "http://localhost.:8001"},
		{url: "http://127.0.0.1:0", wantErr: []string{"port is not 1-65535"}},
		{url: "http://127.0.0.1:99999", wantErr: []string{"port is not 1-65535"}},
		{url: "http://127.0.0.1:8001/api", wantErr: []string{"no user, password, path, query or fragment"}},
		{url: "http://127.0.0.1:8001?x=1", wantErr: []string{"no user, password, path, query or fragment"}},
		{url: "http://127.0.0.1:8001#f", wantErr: []string{"no user, password, path, query or fragment"}},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			cfg, err := ProxyConfig(tt.url)
			if tt.wantErr != nil {
				ce := wantConfigError(t, err, tt.wantErr...)
				if ce.Source != tt.url && !strings.Contains(tt.url, "@") {
					t.Errorf("Source = %q, want the URL %q", ce.Source, tt.url)
				}
				return
			}
			if err != nil {
				t.Fatalf("ProxyConfig: %v", err)
			}
			if cfg.Host != tt.wantHost {
				t.Errorf("Host = %q, want %q", cfg.Host, tt.wantHost)
			}
			if cfg.BearerToken != "" || cfg.BearerTokenFile != "" || cfg.Username != "" || len(cfg.CertData) > 0 || cfg.CertFile != "" {
				t.Errorf("the config carries credentials: %+v", cfg)
			}
		})
	}
}

// TestNewWithProxy: the proxy config with the namespace of the pod; the
// in-cluster config is not read.
func TestNewWithProxy(t *testing.T) {
	fakeServiceAccount(t, goodMount())
	loadInClusterConfig = func() (*rest.Config, error) {
		t.Error("the in-cluster config was loaded")
		return nil, rest.ErrNotInCluster
	}
	c, err := New(WithProxy("http://127.0.0.1:8001"))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if c.Host() != "http://127.0.0.1:8001" || c.Namespace() != "team-a" || c.NamespaceSource() != FromFile {
		t.Errorf("host %q, namespace %q from %q", c.Host(), c.Namespace(), c.NamespaceSource())
	}
	if cfg := c.Config(); cfg.QPS != DefaultQPS || cfg.BearerToken != "" {
		t.Errorf("QPS %v, token set %v", cfg.QPS, cfg.BearerToken != "")
	}

	_, err = New(WithProxy("http://10.0.0.5:8001"))
	wantConfigError(t, err, "not a loopback address")
}

func TestNewForConfigNamespace(t *testing.T) {
	cfg := &rest.Config{Host: "https://127.0.0.1:6443", TLSClientConfig: rest.TLSClientConfig{CAData: testCA}}
	for _, tt := range []struct {
		ns      string
		wantErr string
	}{
		{ns: "team-a"},
		{ns: "", wantErr: "the namespace is empty"},
		{ns: "Team_A", wantErr: "is not a valid namespace name"},
		{ns: "team-a\n", wantErr: "is not a valid namespace name"},
	} {
		c, err := NewForConfig(cfg, tt.ns)
		if tt.wantErr != "" {
			// A *ConfigError that names the argument (the demo: exit 3).
			ce := wantConfigError(t, err, tt.wantErr)
			if ce.Source != "NewForConfig's namespace" {
				t.Errorf("NewForConfig(%q): Source = %q", tt.ns, ce.Source)
			}
			continue
		}
		if err != nil {
			t.Fatalf("NewForConfig(%q): %v", tt.ns, err)
		}
		if c.Namespace() != tt.ns || c.NamespaceSource() != "" {
			t.Errorf("namespace %q from %q", c.Namespace(), c.NamespaceSource())
		}
		if c.requestTimeout != DefaultRequestTimeout {
			t.Errorf("request timeout %v", c.requestTimeout)
		}
	}
	// A broken TLS setting is a configuration error.
	_, err := NewForConfig(&rest.Config{Host: "https://127.0.0.1:6443", TLSClientConfig: rest.TLSClientConfig{CAData: []byte("garbage")}}, "team-a")
	wantConfigError(t, err, "client configuration", "CA bundle")
}

func ptr[T any](v T) *T { return &v }

// TestProxyConfigCredentials: a password in the URL is refused, and the
// error does not repeat it.
func TestProxyConfigCredentials(t *testing.T) {
	_, err := ProxyConfig("http://user:s3cret@127.0.0.1:8001")
	ce := wantConfigError(t, err, "no user, password")
	if strings.Contains(ce.Error(), "s3cret") {
		t.Errorf("the error repeats the password: %v", ce)
	}
}

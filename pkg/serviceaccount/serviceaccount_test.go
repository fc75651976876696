// SPDX-License-Identifier: Apache-2.0

package serviceaccount

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/incluster/incluster/internal/testca"
)

// fakeToken is recognisable so that a test can tell if it leaks.
const fakeToken = "tok-SECRET-123"

// unsetEnv unsets key for the rest of the test and restores it afterwards.
func unsetEnv(t *testing.T, key string) {
	t.Helper()
	t.Setenv(key, "") // registers the restore
	if err := os.Unsetenv(key); err != nil {
		t.Fatal(err)
	}
}

// writeFile writes content to dir/name.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// mkdir makes dir/name a directory, to stand in for an unreadable file.
func mkdir(t *testing.T, dir, name string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	return path
}

// asConfigError fails the test unless err is a *ConfigError.
func asConfigError(t *testing.T, err error) *ConfigError {
	t.Helper()
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T) is not a *ConfigError", err, err)
	}
	return ce
}

// wantConfigError checks what every reader's *ConfigError must say: its
// Source, the parts of its Reason, its Fix, and whether it wraps
// fs.ErrNotExist. It returns the error for further checks.
func wantConfigError(t *testing.T, err error, source string, reason []string, fix string, missing bool) *ConfigError {
	t.Helper()
	ce := asConfigError(t, err)
	if ce.Source != source {
		t.Errorf("Source = %q, want %q", ce.Source, source)
	}
	wantParts(t, "Reason", ce.Reason, reason...)
	if ce.Fix != fix {
		t.Errorf("Fix = %q, want %q", ce.Fix, fix)
	}
	if is := errors.Is(err, fs.ErrNotExist); is != missing {
		t.Errorf("errors.Is(err, fs.ErrNotExist) = %v, want %v", is, missing)
	}
	return ce
}

// wantParts fails the test for each part that s lacks.
func wantParts(t *testing.T, what, s string, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(s, p) {
			t.Errorf("%s %q lacks %q", what, s, p)
		}
	}
}

func TestConfigErrorFormat(t *testing.T) {
	cause := errors.New("cause")
	tests := []struct {
		name string
		err  *ConfigError
		want string
	}{
		{"with fix", &ConfigError{Source: "/sa/token", Reason: "it is empty", Fix: "mount it", Err: cause}, "/sa/token: it is empty; mount it"},
		{"without fix", &ConfigError{Source: PortEnv, Reason: "bad"}, "KUBERNETES_SERVICE_PORT: bad"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
			if got := tt.err.Unwrap(); got != tt.err.Err {
				t.Errorf("Unwrap() = %v, want %v", got, tt.err.Err)
			}
		})
	}
	wrapped := fmt.Errorf("loading: %w", &ConfigError{Source: "x", Reason: "y", Err: cause})
	if !errors.Is(wrapped, cause) {
		t.Error("errors.Is does not reach the ConfigError's cause")
	}
	asConfigError(t, wrapped)
}

func TestHost(t *testing.T) {
	const (
		both     = HostEnv + " and " + PortEnv
		setBoth  = "set both (the kubelet does in every pod) or neither"
		fixHost  = "unset it to let the kubelet set it, or set it to the API server's address"
		fixPort  = "unset it to let the kubelet set it, or set it to the API server's port"
		notAHost = "is neither an IP address nor a DNS name"
		notAPort = "is not a port number (1-65535)"
	)
	tests := []struct {
		name       string
		host, port *string // nil: unset
		want       string
		// on error:
		source   string
		reason   []string
		fix      string
		notInPod bool
		unset    bool // ErrServiceEnvUnset: neither variable set
	}{
		{name: "IPv4", host: ptr("10.96.0.1"), port: ptr("443"), want: "10.96.0.1:443"},
		{name: "IPv4 port 1", host: ptr("10.96.0.1"), port: ptr("1"), want: "10.96.0.1:1"},
		{name: "IPv4 port 65535", host: ptr("10.96.0.1"), port: ptr("65535"), want: "10.96.0.1:65535"},
		{name: "IPv6", host: ptr("fd00::1"), port: ptr("443"), want: "[fd00::1]:443"},
		{name: "IPv6 loopback", host: ptr("::1"), port: ptr("6443"), want: "[::1]:6443"},
		{name: "IPv6 full", host: ptr("2001:db8:0:0:0:0:0:1"), port: ptr("443"), want: "[2001:db8:0:0:0:0:0:1]:443"},
		{name: "DNS name", host: ptr("kubernetes.default.svc"), port: ptr("6443"), want: "kubernetes.default.svc:6443"},
		{name: "short DNS name", host: ptr("apiserver"), port: ptr("443"), want: "apiserver:443"},

		{name: "both unset", source: both, reason: []string{"not set, so this is not running in a Kubernetes pod"},
			fix: "run it in a pod", notInPod: true, unset: true},
		{name: "both empty", host: ptr(""), port: ptr(""), source: both, reason: []string{"not set"}, fix: "run it in a pod", notInPod: true, unset: true},
		{name: "only port", port: ptr("443"), source: HostEnv, reason: []string{"not set while " + PortEnv + " is"}, fix: setBoth, notInPod: true},
		{name: "only host", host: ptr("10.96.0.1"), source: PortEnv, reason: []string{"not set while " + HostEnv + " is"}, fix: setBoth, notInPod: true},

		{name: "host with space", host: ptr("a b"), port: ptr("443"), source: HostEnv, reason: []string{`"a b"`, notAHost}, fix: fixHost},
		{name: "host with port", host: ptr("10.96.0.1:443"), port: ptr("443"), source: HostEnv, reason: []string{`"10.96.0.1:443"`, notAHost}, fix: fixHost},
		{name: "host in brackets", host: ptr("[fd00::1]"), port: ptr("443"), source: HostEnv, reason: []string{`"[fd00::1]"`, notAHost}, fix: fixHost},
		{name: "host is a URL", host: ptr("https://10.96.0.1"), port: ptr("443"), source: HostEnv, reason: []string{`"https://10.96.0.1"`, notAHost}, fix: fixHost},
		{name: "host bad label", host: ptr("-bad-.example"), port: ptr("443"), source: HostEnv, reason: []string{`"-bad-.example"`, notAHost}, fix: fixHost},
		{name: "host upper case", host: ptr("Kubernetes.Default"), port: ptr("443"), source: HostEnv, reason: []string{notAHost}, fix: fixHost},

		{name: "port name", host: ptr("10.96.0.1"), port: ptr("https"), source: PortEnv, reason: []string{`"https"`, notAPort}, fix: fixPort},
		{name: "port zero", host: ptr("10.96.0.1"), port: ptr("0"), source: PortEnv, reason: []string{`"0"`, notAPort}, fix: fixPort},
		{name: "port too big", host: ptr("10.96.0.1"), port: ptr("65536"), source: PortEnv, reason: []string{`"65536"`, notAPort}, fix: fixPort},
		{name: "port negative", host: ptr("10.96.0.1"), port: ptr("-1"), source: PortEnv, reason: []string{`"-1"`, notAPort}, fix: fixPort},
		{name: "port with plus", host: ptr("10.96.0.1"), port: ptr("+443"), source: PortEnv, reason: []string{`"+443"`, notAPort}, fix: fixPort},
		{name: "port hex", host: ptr("10.96.0.1"), port: ptr("0x1bb"), source: PortEnv, reason: []string{`"0x1bb"`, notAPort}, fix: fixPort},
		{name: "port with space", host: ptr("10.96.0.1"), port: ptr(" 443"), source: PortEnv, reason: []string{`" 443"`, notAPort}, fix: fixPort},
		{name: "port huge", host: ptr("10.96.0.1"), port: ptr("99999999999999999999"), source: PortEnv, reason: []string{notAPort}, fix: fixPort},
		{name: "port tcp URL", host: ptr("10.96.0.1"), port: ptr("tcp://10.96.0.1:443"), source: PortEnv, reason: []string{notAPort}, fix: fixPort},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setOrUnset(t, HostEnv, tt.host)
			setOrUnset(t, PortEnv, tt.port)
			got, err := Host()
			if tt.source == "" {
				if err != nil || got != tt.want {
					t.Fatalf("Host() = %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("Host() = %q, want an error about %s", got, tt.source)
			}
			if got != "" {
				t.Errorf("Host() = %q with an error", got)
			}
			ce := asConfigError(t, err)
			if ce.Source != tt.source {
				t.Errorf("Source = %q, want %q", ce.Source, tt.source)
			}
			wantParts(t, "Reason", ce.Reason, tt.reason...)
			wantParts(t, "Fix", ce.Fix, tt.fix)
			wantParts(t, "Error()", err.Error(), append([]string{tt.source + ": "}, tt.reason...)...)
			if is := errors.Is(err, ErrNotInPod); is != tt.notInPod {
				t.Errorf("errors.Is(err, ErrNotInPod) = %v, want %v", is, tt.notInPod)
			}
			if is := errors.Is(err, ErrServiceEnvUnset); is != tt.unset {
				t.Errorf("errors.Is(err, ErrServiceEnvUnset) = %v, want %v", is, tt.unset)
			}
			// Package serviceaccount knows no kubeconfig: the callers that
			// offer one (incluster, the programs) say how to use it.
			if tt.unset && ce.Fix != "run it in a pod" {
				t.Errorf("Fix = %q, want %q", ce.Fix, "run it in a pod")
			}
		})
	}
}

func ptr(s string) *string { return &s }

func setOrUnset(t *testing.T, key string, v *string) {
	t.Helper()
	if v == nil {
		unsetEnv(t, key)
		return
	}
	t.Setenv(key, *v)
}

func TestToken(t *testing.T) {
	const fixReadable = "make the file readable by the container's user (fsGroup, or defaultMode of a projected volume)"
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string) // nil: no token file
		want    string
		reason  string // on error
		fix     string
		missing bool // errors.Is(err, fs.ErrNotExist)
		cause   bool // the ConfigError wraps an OS error
		// unprivileged: read as a user file modes apply to, even as root.
		unprivileged bool
	}{
		{name: "plain", setup: content(fakeToken), want: fakeToken},
		{name: "trailing newline", setup: content(fakeToken + "\n"), want: fakeToken},
		{name: "surrounding whitespace", setup: content(" \t" + fakeToken + "\r\n\n"), want: fakeToken},
		{name: "JWT", setup: content("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"), want: "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"},

		{name: "missing", reason: "no service-account token is mounted", fix: fixMount, missing: true, cause: true},
		{name: "empty", setup: content(""), reason: "the service-account token file is empty", fix: fixMount},
		{name: "whitespace only", setup: content(" \n\t\r\n"), reason: "the service-account token file is empty", fix: fixMount},
		{name: "inner space", setup: content("tok-SECRET 123"), reason: "does not hold a token (it contains whitespace or non-printable bytes)", fix: fixMount},
		{name: "inner newline", setup: content("tok-SECRET\n123"), reason: "does not hold a token", fix: fixMount},
		{name: "NUL byte", setup: content("tok-SECRET\x00123"), reason: "does not hold a token", fix: fixMount},
		{name: "control byte", setup: content("tok-SECRET\x1b[0m123"), reason: "does not hold a token", fix: fixMount},
		{name: "DEL byte", setup: content("tok-SECRET\x7f123"), reason: "does not hold a token", fix: fixMount},
		{name: "non-ASCII", setup: content("tok-SECRÉT-123"), reason: "does not hold a token", fix: fixMount},
		{name: "invalid UTF-8", setup: content("\xff\xfe"), reason: "does not hold a token", fix: fixMount},
		{name: "directory", setup: func(t *testing.T, dir string) { mkdir(t, dir, TokenFile) },
			reason: "cannot read the service-account token: ", fix: fixReadable, cause: true},
		{name: "unreadable", setup: unreadable(fakeToken), unprivileged: true, reason: "cannot read the service-account token: permission denied", fix: fixReadable, cause: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.setup != nil {
				tt.setup(t, dir)
			}
			var got string
			var err error
			read := func() { got, err = Token(dir) }
			if tt.unprivileged {
				asUnprivileged(t, read)
			} else {
				read()
			}
			if tt.reason == "" {
				if err != nil || got != tt.want {
					t.Fatalf("Token() = %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("Token() = %q, want an error", got)
			}
			if got != "" {
				t.Errorf("Token() = %q with an error", got)
			}
			ce := wantConfigError(t, err, filepath.Join(dir, TokenFile), []string{tt.reason}, tt.fix, tt.missing)
			if (ce.Err != nil) != tt.cause {
				t.Errorf("Err = %v, want a cause: %v", ce.Err, tt.cause)
			}
			// The OS error's path is not repeated in the reason.
			if strings.Count(err.Error(), ce.Source) != 1 {
				t.Errorf("Error() %q names %s more than once", err, ce.Source)
			}
			noSecret(t, err)
		})
	}
}

func content(s string) func(*testing.T, string) {
	return func(t *testing.T, dir string) { writeFile(t, dir, TokenFile, s) }
}

// unreadable writes a token file with mode 0, which the test's user cannot
// read. Root could (CAP_DAC_OVERRIDE), and CI runs the unit tests as root:
// run the read with asUnprivileged so that it is refused there too.
func unreadable(s string) func(*testing.T, string) {
	return func(t *testing.T, dir string) {
		path := writeFile(t, dir, TokenFile, s)
		if err := os.Chmod(path, 0); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, 0o755); err != nil { // only the file's mode refuses
			t.Fatal(err)
		}
	}
}

// noSecret fails the test if err, however formatted, mentions the fake token
// or its distinctive part.
func noSecret(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, format := range []string{"%v", "%+v", "%s", "%q"} {
		s := fmt.Sprintf(format, err)
		if strings.Contains(s, "SECRET") {
			t.Errorf("the error (%s) mentions the token: %s", format, s)
		}
	}
}

func TestTokenIsReadEachTime(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, TokenFile, "first")
	if got, err := Token(dir); err != nil || got != "first" {
		t.Fatalf("Token() = %q, %v", got, err)
	}
	writeFile(t, dir, TokenFile, "second\n")
	if got, err := Token(dir); err != nil || got != "second" {
		t.Fatalf("after rotation Token() = %q, %v", got, err)
	}
}

func TestDefaultDir(t *testing.T) {
	if DefaultDir != "/var/run/secrets/kubernetes.io/serviceaccount" {
		t.Errorf("DefaultDir = %q", DefaultDir)
	}
	if got := orDefault(""); got != DefaultDir {
		t.Errorf("orDefault(\"\") = %q", got)
	}
	if got := orDefault("/x"); got != "/x" {
		t.Errorf("orDefault(\"/x\") = %q", got)
	}
}

func TestCAPath(t *testing.T) {
	one, two := testca.NewCA(t, "ca-one"), testca.NewCA(t, "ca-two")
	ca1, pem1 := one.Cert, one.PEM
	ca2, pem2 := two.Cert, two.PEM
	const fixCA = "mount the cluster's CA bundle (the kube-root-ca.crt ConfigMap) there"
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("not a key")})
	brokenPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("garbage DER")})
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string) // nil: no CA file
		trusted []*x509.Certificate            // on success: what the pool trusts
		reason  string                         // on error
		fix     string
		missing bool
		cause   bool
	}{
		{name: "one certificate", setup: caFile(pem1), trusted: []*x509.Certificate{ca1}},
		{name: "two certificates", setup: caFile(append(append([]byte{}, pem1...), pem2...)), trusted: []*x509.Certificate{ca1, ca2}},
		{name: "certificate among text and keys", setup: caFile([]byte("# cluster CA\n" + string(keyPEM) + string(pem2) + "trailer\n")), trusted: []*x509.Certificate{ca2}},

		{name: "missing", reason: "no cluster CA bundle is mounted",
			fix: "mount it with the token (automountServiceAccountToken: true), or put the kube-root-ca.crt ConfigMap in the projected volume that holds the token", missing: true, cause: true},
		{name: "empty", setup: caFile(nil), reason: "the CA bundle holds no PEM certificate", fix: fixCA, cause: true},
		{name: "garbage", setup: caFile([]byte("this is not a certificate\n")), reason: "the CA bundle holds no PEM certificate", fix: fixCA, cause: true},
		{name: "only a key", setup: caFile(keyPEM), reason: "the CA bundle holds no PEM certificate", fix: fixCA, cause: true},
		{name: "broken certificate", setup: caFile(brokenPEM), reason: "the CA bundle holds a broken certificate: ", fix: fixCA, cause: true},
		{name: "good then broken", setup: caFile(append(append([]byte{}, pem1...), brokenPEM...)), reason: "the CA bundle holds a broken certificate", fix: fixCA, cause: true},
		{name: "directory", setup: func(t *testing.T, dir string) { mkdir(t, dir, CAFile) },
			reason: "cannot read the cluster CA bundle: ", fix: "make the file readable by the container's user", cause: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.setup != nil {
				tt.setup(t, dir)
			}
			wantPath := filepath.Join(dir, CAFile)
			path, pool, err := CAPath(dir)
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("CAPath() error: %v", err)
				}
				if path != wantPath {
					t.Errorf("path = %q, want %q", path, wantPath)
				}
				for _, c := range tt.trusted {
					if _, err := c.Verify(x509.VerifyOptions{Roots: pool}); err != nil {
						t.Errorf("the pool does not trust %s: %v", c.Subject.CommonName, err)
					}
				}
				return
			}
			if err == nil {
				t.Fatalf("CAPath() = %q, want an error", path)
			}
			if path != "" || pool != nil {
				t.Errorf("CAPath() = %q, %v with an error", path, pool)
			}
			ce := wantConfigError(t, err, wantPath, []string{tt.reason}, tt.fix, tt.missing)
			if (ce.Err != nil) != tt.cause {
				t.Errorf("Err = %v, want a cause: %v", ce.Err, tt.cause)
			}
		})
	}
}

func caFile(b []byte) func(*testing.T, string) {
	return func(t *testing.T, dir string) { writeFile(t, dir, CAFile, string(b)) }
}

func TestCAPathDoesNotTrustOthers(t *testing.T) {
	pem1 := testca.NewCA(t, "ours").PEM
	other := testca.NewCA(t, "theirs").Cert
	dir := t.TempDir()
	writeFile(t, dir, CAFile, string(pem1))
	_, pool, err := CAPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	var unknown x509.UnknownAuthorityError
	if _, err := other.Verify(x509.VerifyOptions{Roots: pool}); !errors.As(err, &unknown) {
		t.Errorf("a foreign CA verified against the pool: %v", err)
	}
}

func TestParseCA(t *testing.T) {
	good := testca.NewCA(t, "ca").PEM
	tests := []struct {
		name    string
		in      []byte
		wantErr string
	}{
		{"valid", good, ""},
		{"valid with CRLF and text", []byte("subject=ca\r\n" + strings.ReplaceAll(string(good), "\n", "\r\n")), ""},
		{"nil", nil, "the CA bundle holds no PEM certificate"},
		{"garbage", []byte("garbage"), "the CA bundle holds no PEM certificate"},
		{"DER, not PEM", mustDER(t, good), "the CA bundle holds no PEM certificate"},
		{"truncated PEM", good[:len(good)/2], "the CA bundle holds no PEM certificate"},
		{"broken", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0x30, 0x03, 1, 2, 3}}), "the CA bundle holds a broken certificate: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pool, err := ParseCA(tt.in)
			if tt.wantErr == "" {
				if err != nil || pool == nil {
					t.Fatalf("ParseCA() = %v, %v", pool, err)
				}
				return
			}
			if err == nil || pool != nil {
				t.Fatalf("ParseCA() = %v, %v; want error %q", pool, err, tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not start with %q", err, tt.wantErr)
			}
			// A configuration problem like the others: programs map it to
			// "configuration" (the demo: exit 3), not to an API failure.
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Source != "" || ce.Reason != err.Error() {
				t.Errorf("error %#v is not a *ConfigError with the reason alone", err)
			}
		})
	}
}

func mustDER(t *testing.T, p []byte) []byte {
	t.Helper()
	b, _ := pem.Decode(p)
	if b == nil {
		t.Fatal("no PEM block")
	}
	return b.Bytes
}

func TestNamespace(t *testing.T) {
	const (
		fixEnv  = "set it from the downward API (valueFrom.fieldRef.fieldPath: metadata.namespace) or unset it"
		fixFile = "set " + PodNamespaceEnv + " from the downward API (fieldRef metadata.namespace)"
	)
	long := strings.Repeat("a", 64)
	tests := []struct {
		name    string
		env     *string // POD_NAMESPACE; nil: unset
		file    *string // namespace file; nil: none
		dirFile bool    // a directory in place of the file
		want    string
		wantSrc NamespaceSource
		// on error:
		source  string // "file" for the namespace file's path
		reason  []string
		fix     string
		missing bool
	}{
		{name: "file", file: ptr("default"), want: "default", wantSrc: FromFile},
		{name: "file with newline", file: ptr("kube-system\n"), want: "kube-system", wantSrc: FromFile},
		{name: "file with whitespace", file: ptr("  team-a \r\n"), want: "team-a", wantSrc: FromFile},
		{name: "file 63 characters", file: ptr(strings.Repeat("a", 63)), want: strings.Repeat("a", 63), wantSrc: FromFile},
		{name: "env over file", env: ptr("team-b"), file: ptr("default"), want: "team-b", wantSrc: FromEnv},
		{name: "env without file", env: ptr("team-b"), want: "team-b", wantSrc: FromEnv},
		{name: "env over a broken file", env: ptr("team-b"), file: ptr("Bad_NS"), want: "team-b", wantSrc: FromEnv},

		{name: "file missing", source: "file", reason: []string{"no namespace file is mounted and " + PodNamespaceEnv + " is not set"},
			fix: "set " + PodNamespaceEnv + " from the downward API (fieldRef metadata.namespace), or " + fixMount, missing: true},
		{name: "file empty", file: ptr(""), source: "file", reason: []string{"the namespace is empty"}, fix: fixFile},
		{name: "file newline only", file: ptr("\n"), source: "file", reason: []string{"the namespace is empty"}, fix: fixFile},
		{name: "file invalid", file: ptr("Bad_NS"), source: "file", reason: []string{`"Bad_NS" is not a valid namespace name: `, "RFC 1123 label"}, fix: fixFile},
		{name: "file too long", file: ptr(long), source: "file", reason: []string{"is not a valid namespace name", "must be no more than 63 characters"}, fix: fixFile},
		{name: "file with dot", file: ptr("a.b"), source: "file", reason: []string{`"a.b" is not a valid namespace name`}, fix: fixFile},
		{name: "file two lines", file: ptr("a\nb\n"), source: "file", reason: []string{`"a\nb" is not a valid namespace name`}, fix: fixFile},
		{name: "file is a directory", dirFile: true, source: "file", reason: []string{"cannot read the namespace file: "},
			fix: "make it readable, or set " + PodNamespaceEnv + " from the downward API"},
		{name: "env invalid", env: ptr("Bad_NS"), file: ptr("default"), source: PodNamespaceEnv, reason: []string{`"Bad_NS" is not a valid namespace name`}, fix: fixEnv},
		{name: "env too long", env: ptr(long), file: ptr("default"), source: PodNamespaceEnv, reason: []string{"must be no more than 63 characters"}, fix: fixEnv},
		{name: "env with newline", env: ptr("team-b\n"), source: PodNamespaceEnv, reason: []string{`"team-b\n" is not a valid namespace name`}, fix: fixEnv},
		// Set but empty is an error, not "unset": the downward API never sets it empty.
		{name: "env empty", env: ptr(""), file: ptr("default"), source: PodNamespaceEnv, reason: []string{"the namespace is empty"}, fix: fixEnv},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setOrUnset(t, PodNamespaceEnv, tt.env)
			dir := t.TempDir()
			path := filepath.Join(dir, NamespaceFile)
			switch {
			case tt.file != nil:
				writeFile(t, dir, NamespaceFile, *tt.file)
			case tt.dirFile:
				mkdir(t, dir, NamespaceFile)
			}
			ns, src, err := Namespace(dir)
			if tt.source == "" {
				if err != nil || ns != tt.want || src != tt.wantSrc {
					t.Fatalf("Namespace() = %q, %q, %v; want %q from %q", ns, src, err, tt.want, tt.wantSrc)
				}
				return
			}
			if err == nil {
				t.Fatalf("Namespace() = %q from %q, want an error", ns, src)
			}
			if ns != "" || src != "" {
				t.Errorf("Namespace() = %q, %q with an error (it must never fall back)", ns, src)
			}
			wantSource := tt.source
			if wantSource == "file" {
				wantSource = path
			}
			wantConfigError(t, err, wantSource, tt.reason, tt.fix, tt.missing)
		})
	}
}

func TestValidateNamespace(t *testing.T) {
	tests := []struct {
		ns      string
		wantErr []string // nil: valid
	}{
		{"default", nil},
		{"kube-system", nil},
		{"a", nil},
		{"0abc", nil},
		{"a-1", nil},
		{strings.Repeat("a", 63), nil},
		{"", []string{"the namespace is empty"}},
		{"Bad_NS", []string{`"Bad_NS" is not a valid namespace name: `, "a lowercase RFC 1123 label must consist of"}},
		{"UPPER", []string{`"UPPER" is not a valid namespace name`}},
		{"-lead", []string{`"-lead" is not a valid namespace name`}},
		{"trail-", []string{`"trail-" is not a valid namespace name`}},
		{"a.b", []string{`"a.b" is not a valid namespace name`}},
		{" ns", []string{`" ns" is not a valid namespace name`}},
		{"é", []string{`"é" is not a valid namespace name`}},
		{strings.Repeat("a", 64), []string{"must be no more than 63 characters"}},
		// Long values are cut to 70 bytes in the message.
		{strings.Repeat("x", 100), []string{`"` + strings.Repeat("x", 70) + `..."`}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%.20q", tt.ns), func(t *testing.T) {
			err := ValidateNamespace(tt.ns)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("ValidateNamespace(%q) = %v", tt.ns, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("ValidateNamespace(%q) = nil, want an error", tt.ns)
			}
			wantParts(t, "error", err.Error(), tt.wantErr...)
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Source != "" || ce.Reason != err.Error() {
				t.Errorf("error %#v is not a *ConfigError with the reason alone", err)
			}
			if len(tt.ns) > 70 && strings.Contains(err.Error(), tt.ns) {
				t.Errorf("the error quotes all %d bytes: %v", len(tt.ns), err)
			}
		})
	}
}

func TestTruncate(t *testing.T) {
	tests := []struct {
		s    string
		n    int
		want string
	}{
		{"abc", 3, "abc"},
		{"abcd", 3, "abc..."},
		{"", 3, ""},
	}
	for _, tt := range tests {
		if got := truncate(tt.s, tt.n); got != tt.want {
			t.Errorf("truncate(%q, %d) = %q, want %q", tt.s, tt.n, got, tt.want)
		}
	}
}

// TestNoErrorMentionsTheToken drives every failure with a recognisable token
// mounted (or half-mounted) and checks that no error quotes it.
func TestNoErrorMentionsTheToken(t *testing.T) {
	tokens := []string{
		fakeToken,
		fakeToken + " trailing-word",
		fakeToken + "\x00",
		"\x01" + fakeToken,
		fakeToken + "\n" + fakeToken,
		"tok-SECRÉT-123",
	}
	for i, tok := range tokens {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			unsetEnv(t, PodNamespaceEnv)
			dir := t.TempDir()
			writeFile(t, dir, TokenFile, tok)
			writeFile(t, dir, CAFile, "garbage "+fakeToken) // even a bundle holding the token
			writeFile(t, dir, NamespaceFile, "Bad_NS")
			got, err := Token(dir)
			if err == nil && got != strings.TrimSpace(tok) {
				t.Errorf("Token() = %q", got)
			}
			noSecret(t, err)
			_, _, err = CAPath(dir)
			if err == nil {
				t.Fatal("CAPath accepted garbage")
			}
			noSecret(t, err)
			_, _, err = Namespace(dir)
			if err == nil {
				t.Fatal("Namespace accepted Bad_NS")
			}
			noSecret(t, err)
		})
	}
	// A token file that is a directory, and one that is missing.
	dir := t.TempDir()
	mkdir(t, dir, TokenFile)
	_, err := Token(dir)
	noSecret(t, err)
	_, err = Token(t.TempDir())
	noSecret(t, err)
}

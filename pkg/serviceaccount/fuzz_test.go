// SPDX-License-Identifier: Apache-2.0

package serviceaccount

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// FuzzHostFrom: whatever the kubelet's variables hold, hostFrom does not
// panic, and what it accepts is a host:port Go can dial.
func FuzzHostFrom(f *testing.F) {
	for _, s := range [][2]string{
		{"10.96.0.1", "443"}, {"fd00::1", "443"}, {"[fd00::1]", "443"}, {"kubernetes.default.svc", "6443"},
		{"", "443"}, {"10.96.0.1", ""}, {"10.96.0.1", "0"}, {"10.96.0.1", "65536"}, {"a b", "1"}, {"10.96.0.1:443", "443"},
		{"-bad-.example", "1"}, {"10.96.0.1", "+443"}, {"10.96.0.1", "0x1bb"}, {"::", "443"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, host, port string) {
		hp, err := hostFrom(host, port)
		if err != nil {
			if hp != "" {
				t.Errorf("hostFrom(%q, %q) = %q with error %v", host, port, hp, err)
			}
			return
		}
		h, p, err := net.SplitHostPort(hp)
		if err != nil {
			t.Fatalf("hostFrom(%q, %q) = %q: not host:port: %v", host, port, hp, err)
		}
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			t.Errorf("hostFrom(%q, %q) = %q: port %q out of range", host, port, hp, p)
		}
		if h == "" || strings.ContainsAny(h, " \t\n/") {
			t.Errorf("hostFrom(%q, %q) = %q: bad host %q", host, port, hp, h)
		}
	})
}

// dns1123Label is what a namespace name is, written out here and not taken
// from ValidateNamespace (which Namespace calls, so checking with it would
// prove nothing): a DNS-1123 label, RFC 1123 section 2.1 as Kubernetes
// reads it: lower-case letters, digits and '-', starting and ending with a
// letter or digit, at most 63 characters.
var dns1123Label = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

func isNamespaceName(s string) bool { return len(s) <= 63 && dns1123Label.MatchString(s) }

// FuzzNamespaceFile: whatever the namespace file holds, Namespace does not
// panic, never invents "default", and accepts the file exactly when its
// content, whitespace trimmed, is a DNS-1123 label (isNamespaceName).
func FuzzNamespaceFile(f *testing.F) {
	for _, s := range []string{"default", "kube-system\n", " ns \n", "", "\n", "Bad_NS", strings.Repeat("a", 63), strings.Repeat("a", 64),
		"a.b", "ns\x00", "é", "-ns", "ns-", "0", "a--b", "ns\n\n", "\u00a0ns"} {
		f.Add([]byte(s))
	}
	f.Setenv(PodNamespaceEnv, "")
	os.Unsetenv(PodNamespaceEnv)
	dir := f.TempDir() // one per fuzzing process; calls in a process run one at a time
	f.Fuzz(func(t *testing.T, content []byte) {
		if err := os.WriteFile(filepath.Join(dir, NamespaceFile), content, 0o600); err != nil {
			t.Fatal(err)
		}
		want := strings.TrimSpace(string(content))
		ns, src, err := Namespace(dir)
		switch valid := isNamespaceName(want); {
		case err != nil && valid:
			t.Errorf("file %q: Namespace refused the DNS-1123 label %q: %v", content, want, err)
		case err != nil && ns != "":
			t.Errorf("file %q: Namespace = %q with error %v", content, ns, err)
		case err == nil && !valid:
			t.Errorf("file %q: Namespace accepted %q, which is not a DNS-1123 label", content, ns)
		case err == nil && (ns != want || src != FromFile):
			t.Errorf("file %q: Namespace = %q from %q, want %q from %q", content, ns, src, want, FromFile)
		}
	})
}

// FuzzToken: Token does not panic, returns the file's trimmed content or an
// error, and no error ever quotes the file's content.
func FuzzToken(f *testing.F) {
	for _, s := range []string{"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", "tok\n", "", "   ", "a b", "tok\x00en", "\xff\xfe"} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, content []byte) {
		if err := os.WriteFile(filepath.Join(dir, TokenFile), content, 0o600); err != nil {
			t.Fatal(err)
		}
		tok, err := Token(dir)
		if err != nil {
			if s := strings.TrimSpace(string(content)); len(s) >= 4 && strings.Contains(err.Error(), s) {
				t.Errorf("the error quotes the token file: %v", err)
			}
			return
		}
		if tok == "" || tok != strings.TrimSpace(string(content)) {
			t.Errorf("Token = %q for file %q", tok, content)
		}
	})
}

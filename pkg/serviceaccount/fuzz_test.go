package serviceaccount

import (
	"net"
	"os"
	"path/filepath"
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

// FuzzNamespaceFile: whatever the namespace file holds, Namespace does not
// panic, accepts only a valid DNS-1123 label, and never invents "default".
func FuzzNamespaceFile(f *testing.F) {
	for _, s := range []string{"default", "kube-system\n", " ns \n", "", "\n", "Bad_NS", strings.Repeat("a", 64), "a.b", "ns\x00", "é"} {
		f.Add([]byte(s))
	}
	f.Setenv(PodNamespaceEnv, "")
	os.Unsetenv(PodNamespaceEnv)
	dir := f.TempDir() // one per fuzzing process; calls in a process run one at a time
	f.Fuzz(func(t *testing.T, content []byte) {
		if err := os.WriteFile(filepath.Join(dir, NamespaceFile), content, 0o600); err != nil {
			t.Fatal(err)
		}
		ns, src, err := Namespace(dir)
		if err != nil {
			if ns != "" {
				t.Errorf("Namespace = %q with error %v", ns, err)
			}
			return
		}
		if ns != strings.TrimSpace(string(content)) || src != FromFile {
			t.Errorf("file %q: Namespace = %q from %q", content, ns, src)
		}
		if err := ValidateNamespace(ns); err != nil {
			t.Errorf("Namespace accepted %q, which ValidateNamespace refuses: %v", ns, err)
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

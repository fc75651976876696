// SPDX-License-Identifier: Apache-2.0

package direct

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const fuzzToken = "fuzz-token-0123456789"

// answer is an http.RoundTripper that returns one canned answer.
type answer struct {
	status      int
	contentType string
	body        []byte
}

func (a answer) RoundTrip(req *http.Request) (*http.Response, error) {
	h := http.Header{}
	h.Set("Content-Type", a.contentType)
	return &http.Response{StatusCode: a.status, Header: h, Body: io.NopCloser(strings.NewReader(string(a.body))), Request: req}, nil
}

// FuzzAPIVersions: whatever the server answers (status, content type,
// body), APIVersions does not panic, returns a document only when it is an
// APIVersions one, and no error quotes the token.
func FuzzAPIVersions(f *testing.F) {
	f.Add(200, "application/json", []byte(`{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":"10.0.0.1:6443"}]}`))
	f.Add(200, "application/json", []byte(`{"kind":"Status"}`))
	f.Add(200, "text/html", []byte(`<html>login</html>`))
	f.Add(401, "application/json", []byte(`{"kind":"Status","message":"Unauthorized","code":401}`))
	f.Add(403, "application/json", []byte(`{"kind":"Status","message":"forbidden: `+fuzzToken+`"}`))
	f.Add(500, "text/plain", []byte("oops"))
	f.Add(200, "application/json; charset=utf-8", []byte(`{"kind":"APIVersions","versions":null}`))
	f.Add(200, "application/json", []byte(`[1,2`))
	f.Add(302, "", []byte(nil))
	dir := f.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte(fuzzToken), 0o600); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, status int, contentType string, body []byte) {
		if status < 100 || status > 999 {
			return // not an HTTP status net/http could deliver
		}
		c := &Client{base: "https://kubernetes.default.svc:443", dir: dir, userAgent: "fuzz",
			http: &http.Client{Transport: answer{status, contentType, body}}}
		v, err := c.APIVersions(t.Context())
		if err != nil {
			if v != nil {
				t.Errorf("a document and an error: %v", err)
			}
			if strings.Contains(err.Error(), fuzzToken) && !strings.Contains(string(body), fuzzToken) {
				t.Errorf("the error quotes the token: %v", err)
			}
			return
		}
		if v.Kind != "APIVersions" || status < 200 || status > 299 {
			t.Errorf("accepted status %d, kind %q", status, v.Kind)
		}
	})
}

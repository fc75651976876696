// SPDX-License-Identifier: Apache-2.0

package direct

import (
	"crypto/x509"
	"net/http"
	"os"
	"time"

	"github.com/incluster/incluster/pkg/internal/careload"
	"github.com/incluster/incluster/pkg/serviceaccount"
)

// Test seams of the CA reload: its clock and how it reads the CA file.
var (
	caReloadNow      = time.Now
	caReloadReadFile = os.ReadFile
)

// followCA returns t wrapped so that it follows the CA bundle at caPath when
// the cluster's CA is rotated: after a request fails with "certificate
// signed by unknown authority", the file is read again at once (at most once
// a second), and if it holds a new CA bundle, a clone of t that trusts it is
// swapped in and the request sent again (package careload). t must not have
// been used yet.
//
// New has checked the file already; it is read once more here to know the
// bytes t trusts, and t's pool is set from them. Should that read fail (the
// file changed since), t keeps the pool it has, and the first re-read
// counts as a change.
func followCA(caPath string, t *http.Transport) http.RoundTripper {
	pem, err := os.ReadFile(caPath)
	if err == nil {
		if pool, err := serviceaccount.ParseCA(pem); err == nil {
			t.TLSClientConfig.RootCAs = pool
		} else {
			pem = nil
		}
	} else {
		pem = nil
	}
	template := t.Clone() // never used, so its clones set up HTTP/2 afresh
	return careload.New(careload.Options{
		Path:      caPath,
		PEM:       pem,
		Transport: t,
		Build: func(_ []byte, pool *x509.CertPool) (http.RoundTripper, error) {
			next := template.Clone()
			next.TLSClientConfig.RootCAs = pool
			return next, nil
		},
		Now:      caReloadNow,
		ReadFile: caReloadReadFile,
	})
}

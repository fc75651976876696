// SPDX-License-Identifier: Apache-2.0

package incluster

import (
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"time"

	"k8s.io/client-go/rest"

	"github.com/incluster/incluster/pkg/internal/careload"
)

// Test seams of the CA reload: its clock and how it reads the CA file.
var (
	caReloadNow      = time.Now
	caReloadReadFile = os.ReadFile
)

// httpClientFor is rest.HTTPClientFor, except that a config that trusts a
// CA file (the in-cluster ca.crt, or a kubeconfig's certificate-authority)
// follows that file as it changes: after a request fails with "certificate
// signed by unknown authority", the file is read again at once (at most once
// a second), and if it holds a new CA bundle the whole transport is rebuilt
// with it, swapped in and the request sent again (package careload).
//
// The transport is built with the file's contents in CAData and CAFile
// cleared. client-go would otherwise follow the file itself
// (ClientsAllowCARotation, on by default since v1.36): it re-reads it at most
// every 5 minutes, before a request and never after a failure, so a client
// fails for up to 5 minutes after the server's switch. One mechanism, ours,
// is easier to reason about than two that swap transports at different
// times, and we know exactly which bundle the transport trusts.
func httpClientFor(cfg *rest.Config) (*http.Client, error) {
	caFile := cfg.TLSClientConfig.CAFile
	if caFile == "" || len(cfg.TLSClientConfig.CAData) > 0 || cfg.Transport != nil {
		// No file to follow (CAData wins over CAFile in client-go), or a
		// transport of the caller's own.
		return rest.HTTPClientFor(cfg)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("cannot read the CA bundle: %w", err)
	}
	base := rest.CopyConfig(cfg)
	base.TLSClientConfig.CAFile, base.TLSClientConfig.CAData = "", pem
	httpClient, err := rest.HTTPClientFor(base)
	if err != nil {
		return nil, err
	}
	httpClient.Transport = careload.New(careload.Options{
		Path:      caFile,
		PEM:       pem,
		Transport: httpClient.Transport,
		Build: func(pem []byte, _ *x509.CertPool) (http.RoundTripper, error) {
			c := rest.CopyConfig(base) // the same wrappers: one token source
			c.TLSClientConfig.CAData = pem
			rt, err := rest.TransportFor(c)
			if err != nil {
				return nil, err
			}
			// A burst of requests after the switch waits for one handshake.
			return newOneConnection(rt), nil
		},
		Now:      caReloadNow,
		ReadFile: caReloadReadFile,
	})
	return httpClient, nil
}

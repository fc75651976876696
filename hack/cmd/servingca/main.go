// SPDX-License-Identifier: Apache-2.0

// Command servingca makes what a rotation of the API server's serving CA
// needs: a new CA, and a new serving certificate signed by it that names the
// same server as the current one (subject, DNS names, IP addresses). It is
// run by `hack/local-cluster.sh rotate-ca` and `hack/kind.sh rotate-ca`, on
// the host, so that no openssl flavour matters (macOS has LibreSSL).
//
//	servingca -current apiserver.crt -out DIR
//
// writes DIR/ca.crt, DIR/ca.key, DIR/apiserver.crt and DIR/apiserver.key
// (keys mode 0600; ECDSA P-256) and prints the new CA's common name, which is
// unique (incluster-serving-ca-<unix nanoseconds>). Exit 1: the current
// certificate could not be read or DIR could not be written; 2: usage.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

func main() {
	current := flag.String("current", "", "the API server's current serving certificate (PEM)")
	out := flag.String("out", "", "folder for ca.crt, ca.key, apiserver.crt, apiserver.key")
	flag.Parse()
	if *current == "" || *out == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: servingca -current APISERVER_CRT -out DIR")
		os.Exit(2)
	}
	cn, err := run(*current, *out, time.Now())
	if err != nil {
		fmt.Fprintln(os.Stderr, "servingca:", err)
		os.Exit(1)
	}
	fmt.Println(cn)
}

func run(currentFile, out string, now time.Time) (string, error) {
	cur, err := readCert(currentFile)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(out, 0o700); err != nil {
		return "", err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	cn := fmt.Sprintf("incluster-serving-ca-%d", now.UnixNano())
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return "", err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return "", err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	leaf := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      cur.Subject,
		DNSNames:     cur.DNSNames,
		IPAddresses:  cur.IPAddresses,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(10, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		return "", err
	}
	for name, block := range map[string]*pem.Block{
		"ca.crt":        {Type: "CERTIFICATE", Bytes: caDER},
		"ca.key":        ecKey(caKey),
		"apiserver.crt": {Type: "CERTIFICATE", Bytes: leafDER},
		"apiserver.key": ecKey(key),
	} {
		if err := os.WriteFile(filepath.Join(out, name), pem.EncodeToMemory(block), 0o600); err != nil {
			return "", err
		}
	}
	return cn, nil
}

func readCert(file string) (*x509.Certificate, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM certificate", file)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if len(c.DNSNames) == 0 && len(c.IPAddresses) == 0 {
		return nil, errors.New(file + ": names no server (no DNS or IP subject alternative name)")
	}
	return c, nil
}

func ecKey(k *ecdsa.PrivateKey) *pem.Block {
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		panic(err) // only for curves crypto/x509 does not know
	}
	return &pem.Block{Type: "EC PRIVATE KEY", Bytes: der}
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err)
	}
	return n
}

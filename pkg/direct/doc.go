// SPDX-License-Identifier: Apache-2.0

// Package direct talks to the Kubernetes API the way the "Accessing the
// Kubernetes API from a Pod" page does with curl, using net/http only:
//
//	curl --cacert $SA/ca.crt -H "Authorization: Bearer $(cat $SA/token)" \
//	     https://kubernetes.default.svc/api
//
// It reads the token and CA from the service-account directory, verifies the
// server against that CA (there is no way to turn verification off), sends
// the token as a bearer token and decodes the JSON answer. It exists to show
// the mechanics without client-go; programs that do more than a few GETs
// should use package incluster. It imports no client-go package.
//
// When the cluster's CA is rotated and the server's certificate is signed
// by an unknown authority, the client reads ca.crt again at once (at most
// once a second); if it holds a new CA bundle, the client trusts it and
// retries the request once. A ca.crt that is missing or not a CA bundle
// keeps the last good CA in use, and the error names the file.
package direct

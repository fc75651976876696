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
package direct

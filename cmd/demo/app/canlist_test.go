// SPDX-License-Identifier: Apache-2.0

package app

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"

	"github.com/incluster/incluster/pkg/incluster"
)

// TestMayListPods: the demo's "can list pods" is a SelfSubjectAccessReview
// for list pods in the client's namespace; a denial is an answer, not an
// error. (It was incluster.Client.CanListPods: the demo's question, not the
// library's.)
func TestMayListPods(t *testing.T) {
	notInPod(t)
	for _, allowed := range []bool{true, false} {
		var sent *authorizationv1.ResourceAttributes
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var review authorizationv1.SelfSubjectAccessReview
			if r.URL.Path != "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews" || json.NewDecoder(r.Body).Decode(&review) != nil {
				http.Error(w, "unexpected request", http.StatusBadRequest)
				return
			}
			sent = review.Spec.ResourceAttributes
			review.Status.Allowed = allowed
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			_ = json.NewEncoder(w).Encode(&review)
		}))
		t.Setenv("POD_NAMESPACE", "demo-ns")
		c, err := incluster.New(incluster.WithProxy(srv.URL)) // plain HTTP on 127.0.0.1
		if err != nil {
			t.Fatal(err)
		}
		ok, err := mayListPods(t.Context(), c)
		srv.Close()
		if err != nil || ok != allowed {
			t.Errorf("mayListPods = %v, %v; want %v", ok, err, allowed)
		}
		want := authorizationv1.ResourceAttributes{Namespace: "demo-ns", Verb: "list", Resource: "pods"}
		if sent == nil || *sent != want {
			t.Errorf("resourceAttributes sent: %+v, want %+v", sent, want)
		}
	}
}

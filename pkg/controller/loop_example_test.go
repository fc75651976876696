// SPDX-License-Identifier: Apache-2.0

package controller_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/incluster/incluster/pkg/controller"
)

// mirror is a whole controller: for each Secret labelled
// team.example/mirror=true, a ConfigMap of the same name, owned by the
// Secret (deleted with it), with the SHA-256 of each key in an annotation.
// The loop reconciles a Secret when it changes, and when its ConfigMap is
// changed or deleted by hand.
func mirror(m *controller.Manager, cs kubernetes.Interface) (*controller.Loop, error) {
	secrets, err := controller.NewInformer(m, cs.CoreV1().Secrets, controller.WithLabelSelector("team.example/mirror=true"))
	if err != nil {
		return nil, err
	}
	configMaps, err := controller.NewInformer(m, cs.CoreV1().ConfigMaps)
	if err != nil {
		return nil, err
	}
	reconcile := func(ctx context.Context, req controller.Request) (controller.Result, error) {
		s, err := secrets.Get(req.Namespace, req.Name) // from the cache
		if apierrors.IsNotFound(err) {
			return controller.Result{}, nil // gone: its ConfigMap goes with it
		}
		if err != nil {
			return controller.Result{}, err
		}
		sums := map[string]string{}
		for k, v := range s.Data {
			sum := sha256.Sum256(v)
			sums["team.example/sha256-"+k] = hex.EncodeToString(sum[:])
		}
		cm := corev1ac.ConfigMap(s.Name, s.Namespace).WithAnnotations(sums).WithOwnerReferences(
			metav1ac.OwnerReference().WithAPIVersion("v1").WithKind("Secret").WithName(s.Name).WithUID(s.UID).WithController(true))
		_, err = cs.CoreV1().ConfigMaps(s.Namespace).Apply(ctx, cm, metav1.ApplyOptions{FieldManager: "secret-mirror", Force: true})
		return controller.Result{}, err
	}
	return m.Loop("secret-mirror", secrets, reconcile,
		controller.Owns(configMaps, schema.GroupKind{Kind: "Secret"})), nil
}

// A controller a team starts from, run in a unit test on client-go's fake
// clientset: the Manager elects itself, syncs its informers and runs the
// loop until the context is cancelled.
func ExampleManager_Loop() {
	cs := fake.NewClientset(&corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "db", UID: "uid-1", Labels: map[string]string{"team.example/mirror": "true"}},
		Data:       map[string][]byte{"password": []byte("hunter2")},
	})
	m, err := controller.NewForClientset(cs, "app", "secret-mirror",
		controller.WithAccessCheck(controller.AllowAll), controller.WithProbeAddress("0"),
		controller.WithIdentity("test"), controller.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		log.Fatal(err)
	}
	loop, err := mirror(m, cs)
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- m.Run(ctx, loop.Work) }()

	for range 500 {
		cm, err := cs.CoreV1().ConfigMaps("app").Get(ctx, "db", metav1.GetOptions{})
		if err == nil {
			fmt.Println(cm.Annotations["team.example/sha256-password"][:16], "owned by", cm.OwnerReferences[0].Kind, cm.OwnerReferences[0].Name)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	fmt.Println("Run:", <-done)
	// Output:
	// f52fbd32b2b3b86f owned by Secret db
	// Run: <nil>
}

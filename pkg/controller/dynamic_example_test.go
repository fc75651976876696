// SPDX-License-Identifier: Apache-2.0

package controller_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/incluster/incluster/pkg/controller"
)

// A custom resource without generated code: a dynamic informer of Widgets
// (example.com/v1) and a loop that reads each from the cache. In a program,
// New makes the dynamic client on the client's connection; this test gives
// NewForClientset client-go's fakes.
func ExampleManager_DynamicInformer() {
	widgets := schema.GroupVersionResource{Group: "example.com", Version: "v1", Resource: "widgets"}
	w := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "example.com/v1", "kind": "Widget",
		"metadata": map[string]any{"namespace": "app", "name": "w1"},
		"spec":     map[string]any{"color": "blue"},
	}}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{widgets: "WidgetList"}, w)
	m, err := controller.NewForClientset(fake.NewClientset(), "app", "widget-controller",
		controller.WithDynamicClient(dyn), controller.WithAccessCheck(controller.AllowAll),
		controller.WithProbeAddress("0"), controller.WithIdentity("test"), controller.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		log.Fatal(err)
	}
	ws, err := m.DynamicInformer(widgets) // list and watch widgets join the preflight
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	loop := m.Loop("widgets", ws, func(_ context.Context, req controller.Request) (controller.Result, error) {
		obj, err := ws.Get(req.Namespace, req.Name) // *unstructured.Unstructured, from the cache
		if err != nil {
			return controller.Result{}, err
		}
		color, _, _ := unstructured.NestedString(obj.Object, "spec", "color")
		fmt.Println(req, color)
		cancel() // one is enough here
		return controller.Result{}, nil
	})
	fmt.Println("Run:", m.Run(ctx, loop.Work))
	// Output:
	// app/w1 blue
	// Run: <nil>
}

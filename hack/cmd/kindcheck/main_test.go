// SPDX-License-Identifier: Apache-2.0

package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The project's own files: kind-config.yaml plus hack/kind-offline.yaml.
func TestApplyPatchProjectFiles(t *testing.T) {
	raw, err := os.ReadFile("../../../kind-config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out, err := applyPatch(raw, "../../kind-offline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	base, err := load(raw)
	if err != nil {
		t.Fatal(err)
	}
	got, err := load(out)
	if err != nil {
		t.Fatalf("the patched config does not load: %v\n%s", err, out)
	}
	got.Name = "incluster" // as -name does
	if errs := append(validate(got), projectRules(got, 0)...); len(errs) > 0 {
		t.Errorf("patched config: %v", errs)
	}
	if !got.Networking.DisableDefaultCNI {
		t.Error("disableDefaultCNI is not set")
	}
	if len(got.KubeadmConfigPatches) != len(base.KubeadmConfigPatches)+2 || len(got.ContainerdConfigPatches) != len(base.ContainerdConfigPatches)+1 {
		t.Errorf("patches: %d kubeadm, %d containerd", len(got.KubeadmConfigPatches), len(got.ContainerdConfigPatches))
	}
	// Everything else is kind-config.yaml's.
	got.Name = base.Name
	got.Networking.DisableDefaultCNI = false
	got.KubeadmConfigPatches, got.ContainerdConfigPatches = base.KubeadmConfigPatches, base.ContainerdConfigPatches
	if !reflect.DeepEqual(got, base) {
		t.Errorf("the patch changed more than it may:\n got %+v\nwant %+v", got, base)
	}
}

func TestApplyPatchRefuses(t *testing.T) {
	base := []byte("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: control-plane\n")
	for _, c := range []struct{ name, patch, want string }{
		{"another field", "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnetworking:\n  podSubnet: 10.1.0.0/16\n", "may only set"},
		{"nodes", "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: worker\n", "may only set"},
		{"unknown field", "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnetwork: {}\n", "not found"},
		{"other kind", "kind: Config\napiVersion: kind.x-k8s.io/v1alpha4\n", "want kind.x-k8s.io/v1alpha4 Cluster"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "patch.yaml")
			if err := os.WriteFile(p, []byte(c.patch), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := applyPatch(base, p)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want one containing %q", err, c.want)
			}
		})
	}
}

// The multi-node cluster: kind-config.yaml, the offline patch, two workers.
func TestAddWorkers(t *testing.T) {
	raw, err := os.ReadFile("../../../kind-config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	patched, err := applyPatch(raw, "../../kind-offline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out, err := addWorkers(patched, 2)
	if err != nil {
		t.Fatal(err)
	}
	got, err := load(out)
	if err != nil {
		t.Fatalf("does not load: %v\n%s", err, out)
	}
	got.Name = "incluster-multinode"
	if errs := append(validate(got), projectRules(got, 2)...); len(errs) > 0 {
		t.Errorf("config with 2 workers: %v", errs)
	}
	if errs := projectRules(got, 0); len(errs) == 0 {
		t.Error("a config of 3 nodes passes the single-node rule")
	}
	if len(got.Nodes) != 3 || got.Nodes[1].Image != got.Nodes[0].Image || got.Nodes[2].Role != "worker" {
		t.Errorf("nodes: %+v", got.Nodes)
	}
	if !got.Networking.DisableDefaultCNI || got.FeatureGates["ShardedListAndWatch"] != true {
		t.Error("the patch or kind-config.yaml's feature gates were lost")
	}
	if _, err := addWorkers(out, 1); err == nil {
		t.Error("adding workers to a config of 3 nodes: no error")
	}
}

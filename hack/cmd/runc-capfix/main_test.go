// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

var bnd = map[string]bool{"CAP_CHOWN": true, "CAP_SYS_ADMIN": true}

func TestDropCapsSpec(t *testing.T) {
	spec := `{"ociVersion":"1.0.2","process":{"args":["/sbin/init"],"capabilities":{"bounding":["CAP_CHOWN","CAP_SYS_RESOURCE","CAP_SYS_ADMIN"],"effective":["CAP_SYS_RESOURCE"]}},"root":{"path":"rootfs"}}`
	out, changed, err := dropCaps([]byte(spec), bnd, false)
	if err != nil || !changed {
		t.Fatalf("dropCaps: changed=%v err=%v", changed, err)
	}
	var doc struct {
		OCIVersion string
		Process    struct {
			Args         []string
			Capabilities map[string][]string
		}
		Root struct{ Path string }
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{"bounding": {"CAP_CHOWN", "CAP_SYS_ADMIN"}, "effective": {}}
	if !reflect.DeepEqual(doc.Process.Capabilities, want) {
		t.Errorf("capabilities = %v, want %v", doc.Process.Capabilities, want)
	}
	// Everything else is kept.
	if doc.OCIVersion != "1.0.2" || doc.Root.Path != "rootfs" || !reflect.DeepEqual(doc.Process.Args, []string{"/sbin/init"}) {
		t.Errorf("other fields changed: %s", out)
	}
}

func TestDropCapsProcessFile(t *testing.T) {
	proc := `{"args":["cat","/kind/version"],"capabilities":{"permitted":["CAP_SYS_RESOURCE","CAP_CHOWN"]}}`
	out, changed, err := dropCaps([]byte(proc), bnd, true)
	if err != nil || !changed {
		t.Fatalf("dropCaps: changed=%v err=%v", changed, err)
	}
	if got, want := string(out), `{"args":["cat","/kind/version"],"capabilities":{"permitted":["CAP_CHOWN"]}}`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestDropCapsNothingToDo(t *testing.T) {
	for _, spec := range []string{
		`{"process":{"args":["x"]}}`,
		`{"root":{}}`,
		`{"process":{"capabilities":{"bounding":["CAP_CHOWN"]}}}`,
	} {
		out, changed, err := dropCaps([]byte(spec), bnd, false)
		if err != nil || changed || string(out) != spec {
			t.Errorf("%s: got %s changed=%v err=%v, want it unchanged", spec, out, changed, err)
		}
	}
	if _, _, err := dropCaps([]byte(`not json`), bnd, false); err == nil {
		t.Error("no error for a spec that is not JSON")
	}
}

func TestFixSpecFindsTheFile(t *testing.T) {
	dir := t.TempDir()
	spec := `{"process":{"capabilities":{"bounding":["CAP_SYS_RESOURCE"]}}}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(spec), 0o600); err != nil {
		t.Fatal(err)
	}
	// This process's bounding set decides; the test only needs a change to
	// happen when CAP_SYS_RESOURCE is missing from it, as on our machines.
	set, err := boundingSet()
	if err != nil {
		t.Fatal(err)
	}
	if err := fixSpec([]string{"--root", "/run/runc", "create", "--bundle", dir, "id"}); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	if changed := string(got) != spec; changed == set["CAP_SYS_RESOURCE"] {
		t.Errorf("config.json after create: %s (CAP_SYS_RESOURCE in the bounding set: %v)", got, set["CAP_SYS_RESOURCE"])
	}
}

// TestFixSpecOnlyCreateAndRun: commands without a spec (start, kill, delete,
// state) leave the bundle's config.json alone. The spec names a capability
// no bounding set has, so an edit would show on every machine; the same
// arguments with create are the control that the file is the one fixSpec
// would edit (and run). Both ways of naming the bundle are tried: --bundle, and none
// (the current directory, runc's default).
func TestFixSpecOnlyCreateAndRun(t *testing.T) {
	const spec = `{"process":{"capabilities":{"bounding":["CAP_CHOWN","CAP_NOT_A_CAPABILITY"]}}}`
	dir := t.TempDir()
	config := filepath.Join(dir, "config.json")
	t.Chdir(dir)
	for _, bundle := range [][]string{{"--bundle", dir}, nil} {
		for _, cmd := range []string{"start", "kill", "delete", "state", "create", "run"} {
			if err := os.WriteFile(config, []byte(spec), 0o600); err != nil {
				t.Fatal(err)
			}
			args := append(append([]string{"--root", "/run/runc", cmd}, bundle...), "id")
			if err := fixSpec(args); err != nil {
				t.Fatalf("fixSpec(%q): %v", args, err)
			}
			got, err := os.ReadFile(config)
			if err != nil {
				t.Fatal(err)
			}
			want := cmd == "create" || cmd == "run"
			if changed := string(got) != spec; changed != want {
				t.Errorf("fixSpec(%q): config.json changed: %v, want %v (%s)", args, changed, want, got)
			}
		}
	}
}

func TestBoundingSet(t *testing.T) {
	set, err := boundingSet()
	if err != nil {
		t.Fatal(err)
	}
	for name := range set {
		found := false
		for _, n := range capNames {
			found = found || n == name
		}
		if !found {
			t.Errorf("%s is not a capability name", name)
		}
	}
}

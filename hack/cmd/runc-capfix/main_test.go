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
	write := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(spec), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("config.json")
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
	// Commands without a spec leave files alone.
	p := write("config.json")
	if err := fixSpec([]string{"start", "id"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); string(got) != spec {
		t.Errorf("start changed config.json: %s", got)
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

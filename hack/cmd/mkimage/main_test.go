// SPDX-License-Identifier: Apache-2.0

package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func TestTreeBytes(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "usr/sbin"), 0o755))
	must(os.MkdirAll(filepath.Join(dir, "tmp"), 0o755))
	must(os.Chmod(filepath.Join(dir, "tmp"), 0o777|os.ModeSticky))
	must(os.WriteFile(filepath.Join(dir, "usr/sbin/xtables-nft-multi"), []byte("binary"), 0o755))
	must(os.Symlink("xtables-nft-multi", filepath.Join(dir, "usr/sbin/iptables")))
	must(os.Symlink("usr/sbin", filepath.Join(dir, "sbin")))

	layer, err := treeBytes(dir)
	if err != nil {
		t.Fatal(err)
	}
	type entry struct {
		name, link string
		typ        byte
		mode       int64
		body       string
	}
	var got []entry
	tr := tar.NewReader(bytes.NewReader(layer))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		if !h.ModTime.Equal(epoch) || h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s: time %v uid %d gid %d, want the epoch and root", h.Name, h.ModTime, h.Uid, h.Gid)
		}
		got = append(got, entry{h.Name, h.Linkname, h.Typeflag, h.Mode, string(body)})
	}
	want := []entry{
		{"sbin", "usr/sbin", tar.TypeSymlink, 0o777, ""},
		{"tmp/", "", tar.TypeDir, 0o1777, ""},
		{"usr/", "", tar.TypeDir, 0o755, ""},
		{"usr/sbin/", "", tar.TypeDir, 0o755, ""},
		{"usr/sbin/iptables", "xtables-nft-multi", tar.TypeSymlink, 0o777, ""},
		{"usr/sbin/xtables-nft-multi", "", tar.TypeReg, 0o755, "binary"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("layer:\n got %v\nwant %v", got, want)
	}
	// The same tree gives the same bytes (and so the same digest).
	again, err := treeBytes(dir)
	if err != nil || !bytes.Equal(again, layer) {
		t.Errorf("second layer differs (err %v)", err)
	}
}

func TestEnvironment(t *testing.T) {
	for _, c := range []struct{ in, want []string }{
		{nil, []string{"PATH=/", "HOME=/tmp"}},
		{[]string{"A=1"}, []string{"PATH=/", "HOME=/tmp", "A=1"}},
		{[]string{"PATH=/usr/local/bin:/usr/bin"}, []string{"HOME=/tmp", "PATH=/usr/local/bin:/usr/bin"}},
		{[]string{"HOME=/root", "PATHX=1"}, []string{"PATH=/", "HOME=/root", "PATHX=1"}},
	} {
		if got := environment(c.in); !reflect.DeepEqual(got, c.want) {
			t.Errorf("environment(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestRunNeedsOneSource(t *testing.T) {
	for _, args := range [][]string{
		{"-ref", "a:b", "-out", "x.tar"},
		{"-binary", "b", "-rootfs", "d", "-path", "/b", "-ref", "a:b", "-out", "x.tar"},
		{"-rootfs", "d", "-ref", "a:b", "-out", "x.tar"}, // -rootfs needs -path
	} {
		if err := run(args, io.Discard); err == nil {
			t.Errorf("run(%q): no error", args)
		}
	}
}

// tinyBinary builds a small Go program for goos/goarch (CGO_ENABLED=0), as
// images.sh builds the demo, and returns its path.
func tinyBinary(t *testing.T, goos, goarch string) string {
	t.Helper()
	dir := t.TempDir()
	src := "package main\n\nfunc main() { println(\"tiny\") }\n"
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module tiny\n\ngo 1.26\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "tiny-"+goos+"-"+goarch)
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH="+goarch, "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=-buildvcs=false")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build for %s/%s: %v\n%s", goos, goarch, err, b)
	}
	return out
}

// mkimage runs the command with args; it returns its error and the path
// of the tarball (in a new folder).
func mkimage(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "image.tar")
	err := run(append([]string{"-ref", "demo:dev", "-out", out, "-path", "/demo"}, args...), io.Discard)
	return out, err
}

func TestPlatformInConfig(t *testing.T) {
	bins := map[string]string{"amd64": tinyBinary(t, "linux", "amd64"), "arm64": tinyBinary(t, "linux", "arm64")}
	for _, c := range []struct {
		args []string
		bin  string
		want v1.Platform
	}{
		{nil, "amd64", v1.Platform{OS: "linux", Architecture: "amd64"}}, // the default
		{[]string{"-platform", "linux/amd64"}, "amd64", v1.Platform{OS: "linux", Architecture: "amd64"}},
		{[]string{"-platform", "linux/arm64"}, "arm64", v1.Platform{OS: "linux", Architecture: "arm64"}},
		{[]string{"-platform", "linux/arm64/v8"}, "arm64", v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}},
	} {
		file, err := mkimage(t, append(c.args, "-binary", bins[c.bin])...)
		if err != nil {
			t.Errorf("%q: %v", c.args, err)
			continue
		}
		img, err := tarball.ImageFromPath(file, nil)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if got := (v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q: config says %s, want %s", c.args, &got, &c.want)
		}
		want, _ := os.ReadFile(bins[c.bin])
		if got, err := fileOf(img, "/demo"); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%q: /demo in the image is not the binary (err %v)", c.args, err)
		}
	}
}

// asDynamic returns a copy of the ELF binary whose PT_NOTE program header
// says PT_INTERP: what a cgo binary looks like to checkBinary.
func asDynamic(t *testing.T, bin []byte) []byte {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		t.Fatal(err)
	}
	if f.Class != elf.ELFCLASS64 || f.Data != elf.ELFDATA2LSB {
		t.Fatalf("want a 64-bit little-endian ELF binary")
	}
	out := slices.Clone(bin)
	phoff := binary.LittleEndian.Uint64(out[32:40])
	phentsize := uint64(binary.LittleEndian.Uint16(out[54:56]))
	for i, p := range f.Progs {
		if p.Type == elf.PT_NOTE {
			binary.LittleEndian.PutUint32(out[phoff+uint64(i)*phentsize:], uint32(elf.PT_INTERP))
			return out
		}
	}
	t.Fatal("no PT_NOTE program header to turn into PT_INTERP")
	return nil
}

func TestBinaryMustMatchPlatform(t *testing.T) {
	amd64, arm64 := tinyBinary(t, "linux", "amd64"), tinyBinary(t, "linux", "arm64")
	dir := t.TempDir()
	write := func(nm string, b []byte) string {
		p := filepath.Join(dir, nm)
		if err := os.WriteFile(p, b, 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	amd64Bytes, _ := os.ReadFile(amd64)
	macho := write("macho", append([]byte{0xcf, 0xfa, 0xed, 0xfe, 0x0c, 0x00, 0x00, 0x01}, make([]byte, 4096)...))
	script := write("script", []byte("#!/bin/sh\necho hi\n"))
	text := write("text", []byte("not a program\n"))
	dynamic := write("dynamic", asDynamic(t, amd64Bytes))
	for _, c := range []struct {
		platform, bin, want string
	}{
		{"linux/amd64", arm64, "is an ELF binary for arm64 (EM_AARCH64), not for linux/amd64 (EM_X86_64): build it with GOOS=linux GOARCH=amd64 CGO_ENABLED=0, or pass -platform linux/arm64"},
		{"linux/arm64", amd64, "is an ELF binary for amd64 (EM_X86_64), not for linux/arm64 (EM_AARCH64)"},
		{"linux/arm64", macho, "is a Mach-O (macOS) executable, not a Linux one for linux/arm64: build it with GOOS=linux GOARCH=arm64"},
		{"linux/amd64", script, "is a script"},
		{"linux/amd64", text, "is not an ELF executable"},
		{"linux/amd64", dynamic, "is dynamically linked (interpreter"},
	} {
		file, err := mkimage(t, "-platform", c.platform, "-binary", c.bin)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("-platform %s -binary %s: error %v, want one with %q", c.platform, filepath.Base(c.bin), err, c.want)
		}
		if _, serr := os.Stat(file); serr == nil {
			t.Errorf("-platform %s -binary %s: %s written despite the error", c.platform, filepath.Base(c.bin), file)
		}
	}
	// With -rootfs the entrypoint is checked too, but may be dynamically
	// linked (the tree may hold its libraries).
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		bin      []byte
		platform string
		ok       bool
	}{
		{amd64Bytes, "linux/amd64", true},
		{amd64Bytes, "linux/arm64", false},
		{asDynamic(t, amd64Bytes), "linux/amd64", true},
	} {
		if err := os.WriteFile(filepath.Join(root, "bin/demo"), c.bin, 0o755); err != nil {
			t.Fatal(err)
		}
		_, err := mkimage(t, "-rootfs", root, "-path", "/bin/demo", "-platform", c.platform)
		if (err == nil) != c.ok {
			t.Errorf("-rootfs with -platform %s: error %v, want ok=%v", c.platform, err, c.ok)
		}
	}
}

func TestPlatformFlag(t *testing.T) {
	amd64 := tinyBinary(t, "linux", "amd64")
	for _, args := range [][]string{
		{"-platform", "windows/amd64", "-binary", amd64},
		{"-platform", "darwin/arm64", "-binary", amd64},
		{"-platform", "linux/s390x", "-binary", amd64},
		{"-platform", "linux/amd64/v3", "-binary", amd64},
		{"-platform", "linux", "-binary", amd64},
		{"-platform", "linux/amd64,linux/amd64", "-binary", amd64, "-binary", amd64},
		{"-platform", "linux/amd64,linux/arm64", "-binary", amd64},                      // one -binary per platform
		{"-platform", "linux/amd64", "-binary", amd64, "-binary", amd64},                // likewise
		{"-platform", "linux/amd64,linux/arm64", "-rootfs", t.TempDir(), "-path", "/x"}, // -rootfs: one platform
	} {
		if _, err := mkimage(t, args...); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}

func TestMultiPlatformIndex(t *testing.T) {
	amd64, arm64 := tinyBinary(t, "linux", "amd64"), tinyBinary(t, "linux", "arm64")
	args := []string{"-platform", "linux/amd64,linux/arm64", "-binary", amd64, "-binary", arm64}
	file, err := mkimage(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	// An OCI image layout, not a docker-archive.
	names, err := tarNames(file)
	if err != nil {
		t.Fatal(err)
	}
	if !names["oci-layout"] || !names["index.json"] || names["manifest.json"] {
		t.Errorf("tarball entries %v: want oci-layout and index.json, no manifest.json", slices.Sorted(maps.Keys(names)))
	}
	// Read back with go-containerregistry's layout package.
	dir := t.TempDir()
	if err := untar(file, dir); err != nil {
		t.Fatal(err)
	}
	lp, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	top, err := lp.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].MediaType != types.OCIImageIndex {
		t.Fatalf("index.json lists %+v, want one OCI image index", im.Manifests)
	}
	d := im.Manifests[0]
	wantAnn := map[string]string{"io.containerd.image.name": "docker.io/library/demo:dev", "org.opencontainers.image.ref.name": "dev"}
	if !reflect.DeepEqual(d.Annotations, wantAnn) {
		t.Errorf("index.json annotations %v, want %v", d.Annotations, wantAnn)
	}
	idx, err := top.ImageIndex(d.Digest)
	if err != nil {
		t.Fatal(err)
	}
	children, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range children.Manifests {
		img, err := idx.Image(c.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		mt, _ := img.MediaType()
		got = append(got, fmt.Sprintf("%s config=%s/%s %s", c.Platform, cf.OS, cf.Architecture, mt))
		want, _ := os.ReadFile(map[string]string{"amd64": amd64, "arm64": arm64}[cf.Architecture])
		if b, err := fileOf(img, "/demo"); err != nil || !bytes.Equal(b, want) {
			t.Errorf("%s: /demo is not the %s binary (err %v)", c.Platform, cf.Architecture, err)
		}
	}
	wantPlatforms := []string{
		"linux/amd64 config=linux/amd64 application/vnd.oci.image.manifest.v1+json",
		"linux/arm64 config=linux/arm64 application/vnd.oci.image.manifest.v1+json",
	}
	if !reflect.DeepEqual(got, wantPlatforms) {
		t.Errorf("index:\n got %q\nwant %q", got, wantPlatforms)
	}
	// -inspect reads the same and finds it consistent.
	var out bytes.Buffer
	if err := inspectFile(file, &out); err != nil {
		t.Fatalf("-inspect: %v", err)
	}
	if n := strings.Count(out.String(), " /demo EM_"); n != 2 || !strings.Contains(out.String(), "linux/arm64 ") ||
		!strings.Contains(out.String(), "oci-layout index "+d.Digest.String()+" docker.io/library/demo:dev") {
		t.Errorf("-inspect printed:\n%s", out.String())
	}
	// The same binaries give the same bytes.
	again, err := mkimage(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(file)
	b, _ := os.ReadFile(again)
	if !bytes.Equal(a, b) {
		t.Error("a second build of the index differs")
	}
}

// A tarball as mkimage wrote them before platforms existed: an arm64 binary
// in an image whose config says amd64. -inspect refuses it.
func TestInspectRefusesMislabelledImage(t *testing.T) {
	arm64, _ := os.ReadFile(tinyBinary(t, "linux", "arm64"))
	layerTar, err := layerBytes("/demo", arm64)
	if err != nil {
		t.Fatal(err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layerTar)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Entrypoint = []string{"/demo"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "old.tar")
	tag, _ := name.NewTag("demo:dev")
	if err := tarball.WriteToFile(file, tag, img); err != nil {
		t.Fatal(err)
	}
	err = inspectFile(file, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "EM_AARCH64") {
		t.Errorf("-inspect of an arm64 binary labelled amd64: error %v, want one naming EM_AARCH64", err)
	}
}

func TestImageName(t *testing.T) {
	for ref, want := range map[string]string{
		"incluster-demo:dev":              "docker.io/library/incluster-demo:dev",
		"incluster.local/kubectl:v1.37.2": "incluster.local/kubectl:v1.37.2",
		"ghcr.io/o/r:t":                   "ghcr.io/o/r:t",
		"localhost:5000/x:y":              "localhost:5000/x:y",
		"user/app:1":                      "docker.io/user/app:1",
	} {
		tag, err := name.NewTag(ref)
		if err != nil {
			t.Fatal(err)
		}
		if got := imageName(tag); got != want {
			t.Errorf("imageName(%s) = %s, want %s", ref, got, want)
		}
	}
}

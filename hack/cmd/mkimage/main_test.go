// SPDX-License-Identifier: Apache-2.0

package main

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"
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

// SPDX-License-Identifier: Apache-2.0

// Command mkimage writes a single-layer container image holding one static
// binary, or a directory tree (-rootfs), as a docker-archive tarball, with no
// Docker and no registry.
//
// The tarball is what `ctr images import` and `kind load image-archive` take.
// Every timestamp is fixed and the layer is written in a fixed order, so the
// same binary gives the same image digest.
//
//	mkimage -binary _output/demo -ref incluster-demo:dev -out _output/images/demo.tar
//	mkimage -rootfs DIR -path /usr/local/bin/kube-proxy -user 0:0 -ref ... -out ...
package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// epoch is the time written everywhere a time is asked for: reproducible digests.
var epoch = time.Unix(0, 0).UTC()

// options says what image to write.
type options struct {
	binary string   // path of the static binary on the host
	rootfs string   // or: a directory whose whole tree is the layer
	inPath string   // where it goes in the image, e.g. /demo
	ref    string   // image reference recorded in the tarball
	out    string   // tarball to write
	user   string   // uid:gid the entrypoint runs as
	args   []string // default arguments (Cmd)
	env    []string // extra environment, KEY=VALUE
}

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(argv []string, stdout io.Writer) error {
	var o options
	var args, env string
	fs := flag.NewFlagSet("mkimage", flag.ContinueOnError)
	fs.StringVar(&o.binary, "binary", "", "static binary to put in the image (this or -rootfs)")
	fs.StringVar(&o.rootfs, "rootfs", "", "directory whose tree is the image's files (this or -binary; needs -path)")
	fs.StringVar(&o.inPath, "path", "", "path of the binary in the image and entrypoint (default /<base name of -binary>)")
	fs.StringVar(&o.ref, "ref", "", "image reference, e.g. incluster-demo:dev (required)")
	fs.StringVar(&o.out, "out", "", "docker-archive tarball to write (required)")
	fs.StringVar(&o.user, "user", "65532:65532", "user:group the entrypoint runs as")
	fs.StringVar(&args, "args", "", "default arguments (Cmd), separated by spaces")
	fs.StringVar(&env, "env", "", "environment, KEY=VALUE separated by commas (PATH and HOME replace the defaults / and /tmp)")
	if err := fs.Parse(argv); err != nil {
		return err
	}
	if (o.binary == "") == (o.rootfs == "") || o.ref == "" || o.out == "" || (o.rootfs != "" && o.inPath == "") {
		fs.Usage()
		return errors.New("-ref, -out and one of -binary or -rootfs (with -path) are required")
	}
	if o.inPath == "" {
		o.inPath = "/" + filepath.Base(o.binary)
	}
	o.args = strings.Fields(args)
	if env != "" {
		o.env = strings.Split(env, ",")
	}

	digest, err := write(o)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s %s %s\n", o.out, o.ref, digest)
	return nil
}

// write builds the image and writes the tarball; it returns the image digest.
func write(o options) (v1.Hash, error) {
	ref, err := name.NewTag(o.ref)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("reference %q: %w", o.ref, err)
	}
	var layerTar []byte
	if o.rootfs != "" {
		layerTar, err = treeBytes(o.rootfs)
	} else {
		var bin []byte
		if bin, err = os.ReadFile(o.binary); err == nil {
			layerTar, err = layerBytes(o.inPath, bin)
		}
	}
	if err != nil {
		return v1.Hash{}, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return v1.Hash{}, err
	}
	img, err := mutate.Append(empty.Image, mutate.Addendum{
		Layer:   layer,
		History: v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "mkimage " + o.inPath},
	})
	if err != nil {
		return v1.Hash{}, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return v1.Hash{}, err
	}
	cf = cf.DeepCopy()
	cf.OS = "linux"
	cf.Architecture = "amd64"
	cf.Created = v1.Time{Time: epoch}
	cf.Config.Entrypoint = []string{o.inPath}
	cf.Config.Cmd = o.args
	cf.Config.User = o.user
	cf.Config.WorkingDir = "/"
	cf.Config.Env = environment(o.env)
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return v1.Hash{}, err
	}
	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		return v1.Hash{}, err
	}
	// Write next to the target and rename, so a reader never sees half a file.
	tmp := o.out + ".tmp"
	if err := tarball.WriteToFile(tmp, ref, img); err != nil {
		return v1.Hash{}, err
	}
	if err := os.Rename(tmp, o.out); err != nil {
		return v1.Hash{}, err
	}
	return img.Digest()
}

// layerBytes returns an uncompressed layer: /tmp (1777, for HOME) and the binary.
func layerBytes(inPath string, bin []byte) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	var parents []string // parents of the binary, deepest first
	for d := path.Dir(strings.TrimPrefix(inPath, "/")); d != "." && d != "tmp"; d = path.Dir(d) {
		parents = append(parents, d+"/")
	}
	dirs := []string{"tmp/"}
	for i := len(parents) - 1; i >= 0; i-- {
		dirs = append(dirs, parents[i])
	}
	for _, d := range dirs {
		mode := int64(0o755)
		if d == "tmp/" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: mode, ModTime: epoch, Format: tar.FormatUSTAR}); err != nil {
			return nil, err
		}
	}
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     strings.TrimPrefix(inPath, "/"),
		Mode:     0o755,
		Size:     int64(len(bin)),
		ModTime:  epoch,
		Format:   tar.FormatUSTAR,
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, err
	}
	if _, err := tw.Write(bin); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// environment returns PATH=/ and HOME=/tmp unless env sets them, then env.
func environment(env []string) []string {
	out := []string{}
	for _, def := range []string{"PATH=/", "HOME=/tmp"} {
		key, _, _ := strings.Cut(def, "=")
		if !slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, key+"=") }) {
			out = append(out, def)
		}
	}
	return append(out, env...)
}

// treeBytes returns an uncompressed layer holding the tree under dir, in
// lexical order, owned by root, with fixed times: the same tree gives the
// same layer. Regular files, directories and symbolic links only.
func treeBytes(dir string) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: filepath.ToSlash(rel), Mode: int64(info.Mode().Perm()), ModTime: epoch, Format: tar.FormatPAX}
		switch {
		case d.IsDir():
			hdr.Typeflag, hdr.Name = tar.TypeDir, hdr.Name+"/"
			if info.Mode()&fs.ModeSticky != 0 {
				hdr.Mode |= 0o1000
			}
		case d.Type()&fs.ModeSymlink != 0:
			hdr.Typeflag = tar.TypeSymlink
			if hdr.Linkname, err = os.Readlink(p); err != nil {
				return err
			}
		case d.Type().IsRegular():
			hdr.Typeflag, hdr.Size = tar.TypeReg, info.Size()
		default:
			return fmt.Errorf("%s: not a regular file, directory or symbolic link", p)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

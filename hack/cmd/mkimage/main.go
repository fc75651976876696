// SPDX-License-Identifier: Apache-2.0

// Command mkimage writes a single-layer container image holding one static
// binary, or a directory tree (-rootfs), with no Docker and no registry.
//
// One platform (-platform, default linux/amd64): a docker-archive tarball.
// Several (-platform linux/amd64,linux/arm64 and one -binary each, in the
// same order): one multi-platform image index, as an OCI image-layout
// tarball. Both are what `ctr images import` and `kind load image-archive`
// (which runs `ctr images import --all-platforms`) take; the index entry
// carries containerd's image-name annotation, so the image is imported
// under -ref. A docker-archive holds one platform per name.
//
// The image config says the platform given, and the binary must match it:
// a Linux ELF executable for that architecture (EM_X86_64 for amd64,
// EM_AARCH64 for arm64), statically linked (-binary: the image holds no
// libraries). Anything else (a macOS binary, another architecture) is
// refused, naming the fix.
//
// Every timestamp is fixed and the layer is written in a fixed order, so the
// same binary gives the same image digest.
//
//	mkimage -binary _output/demo -ref incluster-demo:dev -out _output/images/demo.tar
//	mkimage -platform linux/amd64,linux/arm64 -binary amd64/demo -binary arm64/demo -path /demo -ref ... -out ...
//	mkimage -rootfs DIR -path /usr/local/bin/kube-proxy -user 0:0 -ref ... -out ...
//	mkimage -inspect _output/images/demo.tar   # what a tarball holds, checked
package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
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
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// epoch is the time written everywhere a time is asked for: reproducible digests.
var epoch = time.Unix(0, 0).UTC()

// options says what image to write.
type options struct {
	binaries  []string      // static binaries on the host, one per platform
	rootfs    string        // or: a directory whose whole tree is the layer
	platforms []v1.Platform // the image's platforms (one with -rootfs)
	inPath    string        // where it goes in the image, e.g. /demo
	ref       string        // image reference recorded in the tarball
	out       string        // tarball to write
	user      string        // uid:gid the entrypoint runs as
	args      []string      // default arguments (Cmd)
	env       []string      // extra environment, KEY=VALUE
}

// listFlag is a flag that may be given several times.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(argv []string, stdout io.Writer) error {
	var o options
	var args, env, platforms, inspect string
	var binaries listFlag
	fs := flag.NewFlagSet("mkimage", flag.ContinueOnError)
	fs.Var(&binaries, "binary", "static Linux binary to put in the image (this or -rootfs); once per platform, in -platform's order")
	fs.StringVar(&o.rootfs, "rootfs", "", "directory whose tree is the image's files (this or -binary; needs -path; one platform)")
	fs.StringVar(&platforms, "platform", "linux/amd64", "the image's platform, os/arch[/variant] (linux/amd64, linux/arm64); several, comma-separated, make an image index")
	fs.StringVar(&o.inPath, "path", "", "path of the binary in the image and entrypoint (default /<base name of -binary>)")
	fs.StringVar(&o.ref, "ref", "", "image reference, e.g. incluster-demo:dev (required)")
	fs.StringVar(&o.out, "out", "", "tarball to write (required): docker-archive for one platform, OCI image layout for several")
	fs.StringVar(&o.user, "user", "65532:65532", "user:group the entrypoint runs as")
	fs.StringVar(&args, "args", "", "default arguments (Cmd), separated by spaces")
	fs.StringVar(&env, "env", "", "environment, KEY=VALUE separated by commas (PATH and HOME replace the defaults / and /tmp)")
	fs.StringVar(&inspect, "inspect", "", "print what the tarball `FILE` holds (index, platforms, entrypoint binary) and check that they agree; writes nothing")
	if err := fs.Parse(argv); err != nil {
		return err
	}
	if inspect != "" {
		return inspectFile(inspect, stdout)
	}
	o.binaries = binaries
	if (len(o.binaries) == 0) == (o.rootfs == "") || o.ref == "" || o.out == "" || (o.rootfs != "" && o.inPath == "") {
		fs.Usage()
		return errors.New("-ref, -out and one of -binary or -rootfs (with -path) are required")
	}
	var err error
	if o.platforms, err = parsePlatforms(platforms); err != nil {
		return err
	}
	switch {
	case o.rootfs != "" && len(o.platforms) != 1:
		return fmt.Errorf("-rootfs makes an image for one platform, not %d (-platform %s)", len(o.platforms), platforms)
	case o.rootfs == "" && len(o.binaries) != len(o.platforms):
		return fmt.Errorf("%d -binary for %d platforms (-platform %s): give one -binary per platform, in the same order", len(o.binaries), len(o.platforms), platforms)
	}
	if o.inPath == "" {
		o.inPath = "/" + filepath.Base(o.binaries[0])
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

// parsePlatforms parses "linux/amd64,linux/arm64": Linux, the architectures
// checkBinary knows, each once.
func parsePlatforms(s string) ([]v1.Platform, error) {
	var out []v1.Platform
	for _, f := range strings.Split(s, ",") {
		parts := strings.Split(strings.TrimSpace(f), "/")
		if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
			return nil, fmt.Errorf("-platform %q: want os/arch[/variant], e.g. linux/arm64", f)
		}
		p := v1.Platform{OS: parts[0], Architecture: parts[1]}
		if len(parts) == 3 {
			p.Variant = parts[2]
		}
		if p.OS != "linux" {
			return nil, fmt.Errorf("-platform %q: the images are for Linux nodes (linux/amd64, linux/arm64), whatever the host", f)
		}
		if _, ok := elfMachine[p.Architecture]; !ok {
			return nil, fmt.Errorf("-platform %q: architecture %q is not supported (amd64, arm64)", f, p.Architecture)
		}
		if p.Variant != "" && !(p.Architecture == "arm64" && p.Variant == "v8") {
			return nil, fmt.Errorf("-platform %q: variant %q is not supported (arm64 may say v8)", f, p.Variant)
		}
		if slices.ContainsFunc(out, func(q v1.Platform) bool { return q.Architecture == p.Architecture }) {
			return nil, fmt.Errorf("-platform %q: %s is given twice", s, p.Architecture)
		}
		out = append(out, p)
	}
	return out, nil
}

// write builds the image (or index) and writes the tarball; it returns the
// digest of the image, or of the index.
func write(o options) (v1.Hash, error) {
	ref, err := name.NewTag(o.ref)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("reference %q: %w", o.ref, err)
	}
	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		return v1.Hash{}, err
	}
	// Write next to the target and rename, so a reader never sees half a file.
	tmp := o.out + ".tmp"
	defer os.Remove(tmp)
	var digest v1.Hash
	if len(o.platforms) == 1 {
		// A docker-archive, as before platforms existed: same bytes, same digest.
		img, err := o.image(0, false)
		if err != nil {
			return v1.Hash{}, err
		}
		if err := tarball.WriteToFile(tmp, ref, img); err != nil {
			return v1.Hash{}, err
		}
		if digest, err = img.Digest(); err != nil {
			return v1.Hash{}, err
		}
	} else {
		var adds []mutate.IndexAddendum
		for i, p := range o.platforms {
			img, err := o.image(i, true)
			if err != nil {
				return v1.Hash{}, err
			}
			adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
		}
		idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...)
		if err := writeLayout(tmp, ref, idx); err != nil {
			return v1.Hash{}, err
		}
		if digest, err = idx.Digest(); err != nil {
			return v1.Hash{}, err
		}
	}
	if err := os.Rename(tmp, o.out); err != nil {
		return v1.Hash{}, err
	}
	return digest, nil
}

// image returns the image of platform i: its binary (checked against the
// platform) or the rootfs. oci: OCI media types, for an index (the
// docker-archive keeps Docker's, and so its digest).
func (o options) image(i int, oci bool) (v1.Image, error) {
	p := o.platforms[i]
	var layerTar []byte
	if o.rootfs != "" {
		// The entrypoint, when it is a file of the tree, is checked too;
		// libraries may be there, so it may be dynamically linked.
		entry := filepath.Join(o.rootfs, filepath.FromSlash(o.inPath))
		if st, err := os.Lstat(entry); err == nil && st.Mode().IsRegular() {
			bin, err := os.ReadFile(entry)
			if err != nil {
				return nil, err
			}
			if _, err := checkBinary(entry, bin, p, false); err != nil {
				return nil, err
			}
		}
		var err error
		if layerTar, err = treeBytes(o.rootfs); err != nil {
			return nil, err
		}
	} else {
		bin, err := os.ReadFile(o.binaries[i])
		if err != nil {
			return nil, err
		}
		if _, err := checkBinary(o.binaries[i], bin, p, true); err != nil {
			return nil, err
		}
		if layerTar, err = layerBytes(o.inPath, bin); err != nil {
			return nil, err
		}
	}
	var lopts []tarball.LayerOption
	if oci {
		lopts = append(lopts, tarball.WithMediaType(types.OCILayer))
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, lopts...)
	if err != nil {
		return nil, err
	}
	base := empty.Image
	if oci {
		base = mutate.ConfigMediaType(mutate.MediaType(base, types.OCIManifestSchema1), types.OCIConfigJSON)
	}
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:   layer,
		History: v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "mkimage " + o.inPath},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS = p.OS
	cf.Architecture = p.Architecture
	cf.Variant = p.Variant
	cf.Created = v1.Time{Time: epoch}
	cf.Config.Entrypoint = []string{o.inPath}
	cf.Config.Cmd = o.args
	cf.Config.User = o.user
	cf.Config.WorkingDir = "/"
	cf.Config.Env = environment(o.env)
	return mutate.ConfigFile(img, cf)
}

// containerd's annotation for the image's name in an OCI layout
// (images.AnnotationImageName): `ctr images import` names the image with
// it. The OCI one holds only the tag.
const (
	annotationImageName = "io.containerd.image.name"
	annotationRefName   = "org.opencontainers.image.ref.name"
)

// imageName is ref as containerd names images: docker.io/library/NAME:TAG
// for Docker Hub's short names, as it normalizes a docker-archive's RepoTags.
func imageName(ref name.Tag) string {
	reg := ref.RegistryStr()
	if reg == name.DefaultRegistry {
		reg = "docker.io"
	}
	return reg + "/" + ref.RepositoryStr() + ":" + ref.TagStr()
}

// writeLayout writes idx as an OCI image-layout tarball: oci-layout,
// index.json (one entry, the index, named ref), and every blob under
// blobs/sha256/, in a fixed order with fixed times.
func writeLayout(file string, ref name.Tag, idx v1.ImageIndex) error {
	blobs := map[string][]byte{} // by hex SHA-256
	add := func(raw []byte) {
		sum := sha256.Sum256(raw)
		blobs[hex.EncodeToString(sum[:])] = raw
	}
	raw, err := idx.RawManifest()
	if err != nil {
		return err
	}
	add(raw)
	im, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	for _, d := range im.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			return err
		}
		for _, f := range []func() ([]byte, error){img.RawManifest, img.RawConfigFile} {
			b, err := f()
			if err != nil {
				return err
			}
			add(b)
		}
		layers, err := img.Layers()
		if err != nil {
			return err
		}
		for _, l := range layers {
			rc, err := l.Compressed()
			if err != nil {
				return err
			}
			b, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				return err
			}
			add(b)
		}
	}
	desc, err := partial.Descriptor(idx)
	if err != nil {
		return err
	}
	desc.Annotations = map[string]string{annotationImageName: imageName(ref), annotationRefName: ref.TagStr()}
	indexJSON, err := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{*desc}})
	if err != nil {
		return err
	}

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	entry := func(nm string, body []byte) error {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: nm, Mode: 0o644, Size: int64(len(body)), ModTime: epoch, Format: tar.FormatPAX}
		if body == nil {
			hdr.Typeflag, hdr.Mode = tar.TypeDir, 0o755
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err := tw.Write(body)
		return err
	}
	if err := entry("blobs/", nil); err != nil {
		return err
	}
	if err := entry("blobs/sha256/", nil); err != nil {
		return err
	}
	for _, h := range slices.Sorted(maps.Keys(blobs)) {
		if err := entry("blobs/sha256/"+h, blobs[h]); err != nil {
			return err
		}
	}
	if err := entry("index.json", indexJSON); err != nil {
		return err
	}
	if err := entry("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return os.WriteFile(file, buf.Bytes(), 0o644)
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

// SPDX-License-Identifier: Apache-2.0

package main

import (
	"archive/tar"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// inspectFile prints what the tarball file holds, read back with
// go-containerregistry (as `crane manifest` and `crane config` would show
// it): a header line per image or index,
//
//	FILE: docker-archive image DIGEST REPO:TAG
//	FILE: oci-layout index DIGEST NAME     (NAME: containerd's image-name annotation)
//
// then one line per image, "  PLATFORM MANIFEST-DIGEST ENTRYPOINT ELF-MACHINE
// sha256:ENTRYPOINT-FILE". It fails if the index's platform, the config's and
// the entrypoint binary's ELF machine do not agree.
func inspectFile(file string, w io.Writer) error {
	names, err := tarNames(file)
	if err != nil {
		return err
	}
	switch {
	case names["oci-layout"] && names["index.json"]:
		return inspectLayout(file, w)
	case names["manifest.json"]:
		return inspectArchive(file, w)
	}
	return fmt.Errorf("%s is neither an OCI image layout (oci-layout, index.json) nor a docker-archive (manifest.json)", file)
}

func tarNames(file string) (map[string]bool, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names := map[string]bool{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		names[path.Clean(h.Name)] = true
	}
}

func inspectArchive(file string, w io.Writer) error {
	opener := func() (io.ReadCloser, error) { return os.Open(file) }
	m, err := tarball.LoadManifest(opener)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	for _, d := range m {
		if len(d.RepoTags) == 0 {
			return fmt.Errorf("%s: an image with no tag (config %s)", file, d.Config)
		}
		tag, err := name.NewTag(d.RepoTags[0])
		if err != nil {
			return err
		}
		img, err := tarball.Image(opener, &tag)
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		digest, err := img.Digest()
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%s: docker-archive image %s %s\n", file, digest, strings.Join(d.RepoTags, ","))
		if err := inspectImage(img, nil, w); err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
	}
	return nil
}

func inspectLayout(file string, w io.Writer) error {
	dir, err := os.MkdirTemp("", "mkimage-inspect")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := untar(file, dir); err != nil {
		return err
	}
	lp, err := layout.FromPath(dir)
	if err != nil {
		return err
	}
	top, err := lp.ImageIndex() // index.json
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	im, err := top.IndexManifest()
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if len(im.Manifests) == 0 {
		return fmt.Errorf("%s: index.json lists nothing", file)
	}
	for _, d := range im.Manifests {
		nm := d.Annotations[annotationImageName]
		if nm == "" {
			nm = "(no " + annotationImageName + " annotation)"
		}
		switch {
		case d.MediaType.IsIndex():
			idx, err := top.ImageIndex(d.Digest)
			if err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			fmt.Fprintf(w, "%s: oci-layout index %s %s\n", file, d.Digest, nm)
			children, err := idx.IndexManifest()
			if err != nil {
				return err
			}
			for _, c := range children.Manifests {
				img, err := idx.Image(c.Digest)
				if err != nil {
					return fmt.Errorf("%s: %w", file, err)
				}
				if c.Platform == nil {
					return fmt.Errorf("%s: index %s lists image %s with no platform", file, d.Digest, c.Digest)
				}
				if err := inspectImage(img, c.Platform, w); err != nil {
					return fmt.Errorf("%s: %w", file, err)
				}
			}
		case d.MediaType.IsImage():
			img, err := top.Image(d.Digest)
			if err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			fmt.Fprintf(w, "%s: oci-layout image %s %s\n", file, d.Digest, nm)
			if err := inspectImage(img, d.Platform, w); err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
		default:
			return fmt.Errorf("%s: index.json lists %s of media type %s", file, d.Digest, d.MediaType)
		}
	}
	return nil
}

// inspectImage prints the line of one image; want is its platform in the
// index (nil for a docker-archive).
func inspectImage(img v1.Image, want *v1.Platform, w io.Writer) error {
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	p := v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}
	if want != nil && (want.OS != p.OS || want.Architecture != p.Architecture || want.Variant != p.Variant) {
		return fmt.Errorf("image %s: the index says %s, its config says %s", digest, want, &p)
	}
	if len(cf.Config.Entrypoint) == 0 {
		return fmt.Errorf("image %s (%s): no entrypoint", digest, &p)
	}
	ep := cf.Config.Entrypoint[0]
	bin, err := fileOf(img, ep)
	if err != nil {
		return fmt.Errorf("image %s (%s): %w", digest, &p, err)
	}
	if _, ok := elfMachine[p.Architecture]; !ok || p.OS != "linux" {
		return fmt.Errorf("image %s: platform %s is not one mkimage writes (linux/amd64, linux/arm64)", digest, &p)
	}
	m, err := checkBinary(ep, bin, p, false)
	if err != nil {
		return fmt.Errorf("image %s: %w", digest, err)
	}
	fmt.Fprintf(w, "  %s %s %s %v sha256:%x\n", &p, digest, ep, m, sha256.Sum256(bin))
	return nil
}

// fileOf returns the content of the regular file at p in img's file system.
func fileOf(img v1.Image, p string) ([]byte, error) {
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	want := strings.TrimPrefix(path.Clean(p), "/")
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil, fmt.Errorf("entrypoint %s is not in the image", p)
		}
		if err != nil {
			return nil, err
		}
		if strings.TrimPrefix(path.Clean(h.Name), "/") != want {
			continue
		}
		if h.Typeflag != tar.TypeReg {
			return nil, fmt.Errorf("entrypoint %s is not a regular file", p)
		}
		return io.ReadAll(tr)
	}
}

// untar extracts the regular files and directories of file into dir.
func untar(file, dir string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		rel := path.Clean(h.Name)
		if !filepath.IsLocal(rel) {
			return fmt.Errorf("%s: entry %q is outside the layout", file, h.Name)
		}
		dst := filepath.Join(dir, filepath.FromSlash(rel))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			out, err := os.Create(dst)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		default:
			return errors.New(file + ": entry " + h.Name + " is not a file or directory")
		}
	}
}

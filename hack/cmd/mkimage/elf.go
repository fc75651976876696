// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"debug/elf"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// elfMachine is the ELF machine of a Linux binary for each architecture an
// image may be written for (Go's GOARCH names, as in image configs).
var elfMachine = map[string]elf.Machine{
	"amd64": elf.EM_X86_64,
	"arm64": elf.EM_AARCH64,
}

// checkBinary returns nil if bin (read from file) runs on p: a Linux ELF
// executable, 64-bit, for p's architecture, and, if static, with no
// program interpreter (an image of one binary holds no dynamic loader nor
// libraries). The errors name what the binary is and how to build the
// right one. It returns the binary's ELF machine.
func checkBinary(file string, bin []byte, p v1.Platform, static bool) (elf.Machine, error) {
	want := elfMachine[p.Architecture]
	fix := fmt.Sprintf("build it with GOOS=linux GOARCH=%s CGO_ENABLED=0", p.Architecture)
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		switch {
		case isMachO(bin):
			return 0, fmt.Errorf("%s is a Mach-O (macOS) executable, not a Linux one for %s: %s", file, p, fix)
		case bytes.HasPrefix(bin, []byte("MZ")):
			return 0, fmt.Errorf("%s is a Windows (PE) executable, not a Linux one for %s: %s", file, p, fix)
		case bytes.HasPrefix(bin, []byte("#!")):
			return 0, fmt.Errorf("%s is a script, not a Linux executable for %s (the image has no shell): %s", file, p, fix)
		}
		return 0, fmt.Errorf("%s is not an ELF executable (%v), not a Linux one for %s: %s", file, err, p, fix)
	}
	defer f.Close()
	if f.Machine != want || f.Class != elf.ELFCLASS64 {
		got := fmt.Sprintf("machine %v, %v", f.Machine, f.Class)
		for arch, m := range elfMachine {
			if m == f.Machine && f.Class == elf.ELFCLASS64 {
				got = fmt.Sprintf("%s (%v)", arch, m)
				fix += fmt.Sprintf(", or pass -platform linux/%s", arch)
			}
		}
		return f.Machine, fmt.Errorf("%s is an ELF binary for %s, not for %s (%v): %s", file, got, p, want, fix)
	}
	if f.OSABI != elf.ELFOSABI_NONE && f.OSABI != elf.ELFOSABI_LINUX {
		return f.Machine, fmt.Errorf("%s is an ELF binary for %v, not Linux: %s", file, f.OSABI, fix)
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return f.Machine, fmt.Errorf("%s is not an executable (ELF type %v): %s", file, f.Type, fix)
	}
	if static {
		for _, prog := range f.Progs {
			if prog.Type != elf.PT_INTERP {
				continue
			}
			interp := make([]byte, prog.Filesz)
			if _, err := prog.ReadAt(interp, 0); err != nil {
				interp = []byte("?")
			}
			return f.Machine, fmt.Errorf("%s is dynamically linked (interpreter %s) and the image holds no libraries: %s",
				file, bytes.TrimRight(interp, "\x00"), fix)
		}
	}
	return f.Machine, nil
}

// isMachO says whether bin starts like a Mach-O file: 32 or 64 bits, either
// byte order, or a universal (fat) binary.
func isMachO(bin []byte) bool {
	for _, magic := range [][]byte{
		{0xfe, 0xed, 0xfa, 0xce}, {0xce, 0xfa, 0xed, 0xfe},
		{0xfe, 0xed, 0xfa, 0xcf}, {0xcf, 0xfa, 0xed, 0xfe},
		{0xca, 0xfe, 0xba, 0xbe},
	} {
		if bytes.HasPrefix(bin, magic) {
			return true
		}
	}
	return false
}

// SPDX-License-Identifier: Apache-2.0

// Command runc-capfix runs runc after removing, from the container's OCI spec,
// every capability that this machine's capability bounding set lacks.
//
// On this project's machines the bounding set has no CAP_SYS_RESOURCE, so
// `docker run --privileged` (which asks for every capability Docker knows)
// fails in runc with "unable to apply caps: operation not permitted". kind's
// node containers are privileged. hack/kind-docker.sh registers this program
// with dockerd (--add-runtime, --default-runtime); it changes nothing else and
// then execs the real runc with the same arguments.
//
//	runc-capfix [runc arguments...]     (RUNC: the runc to exec, default runc in PATH)
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// capNames lists the Linux capabilities by number (linux/capability.h).
var capNames = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
	"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
	"CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
	"CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
	"CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
	"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

func main() {
	if err := fixSpec(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "runc-capfix:", err)
		os.Exit(1)
	}
	runc := os.Getenv("RUNC")
	if runc == "" {
		runc = "runc"
	}
	path, err := exec.LookPath(runc)
	if err != nil {
		fmt.Fprintln(os.Stderr, "runc-capfix: runc not found (set RUNC or install Debian's runc):", err)
		os.Exit(1)
	}
	argv := append([]string{path}, os.Args[1:]...)
	if err := syscall.Exec(path, argv, os.Environ()); err != nil {
		fmt.Fprintln(os.Stderr, "runc-capfix: exec", path+":", err)
		os.Exit(1)
	}
}

// fixSpec edits <bundle>/config.json for `create` and `run`, and the
// process file of `exec --process FILE` (docker exec); other commands (start,
// kill, delete, state, ...) have no spec to edit.
func fixSpec(args []string) error {
	bundle, process, cmd := ".", "", ""
	for i := 0; i < len(args); i++ {
		a := args[i]
		value := func() string {
			if i+1 < len(args) {
				i++
				return args[i]
			}
			return ""
		}
		switch {
		case a == "--bundle" || a == "-b":
			bundle = value()
		case strings.HasPrefix(a, "--bundle="):
			bundle = strings.TrimPrefix(a, "--bundle=")
		case a == "--process" || a == "-p":
			process = value()
		case strings.HasPrefix(a, "--process="):
			process = strings.TrimPrefix(a, "--process=")
		case cmd == "" && (a == "create" || a == "run" || a == "exec"):
			cmd = a
		}
	}
	var file string
	var inProcess bool // the capabilities are at the top of a process file
	switch {
	case cmd == "create" || cmd == "run":
		file = filepath.Join(bundle, "config.json")
	case cmd == "exec" && process != "":
		file, inProcess = process, true
	default:
		return nil
	}
	bnd, err := boundingSet()
	if err != nil {
		return err
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	out, changed, err := dropCaps(data, bnd, inProcess)
	if err != nil || !changed {
		return err
	}
	return os.WriteFile(file, out, 0o600)
}

// boundingSet returns the names of the capabilities in this process's
// bounding set (CapBnd in /proc/self/status).
func boundingSet() (map[string]bool, error) {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		hex, ok := strings.CutPrefix(line, "CapBnd:")
		if !ok {
			continue
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
		if err != nil {
			return nil, fmt.Errorf("CapBnd in /proc/self/status: %w", err)
		}
		set := map[string]bool{}
		for i, n := range capNames {
			if mask&(1<<i) != 0 {
				set[n] = true
			}
		}
		return set, nil
	}
	return nil, fmt.Errorf("no CapBnd line in /proc/self/status")
}

// dropCaps removes the capabilities not in bnd from every list of
// process.capabilities of an OCI spec (or of capabilities, for a process file
// of runc exec). Unknown fields are kept as they are.
func dropCaps(spec []byte, bnd map[string]bool, inProcess bool) ([]byte, bool, error) {
	if inProcess {
		wrapped, changed, err := dropCaps([]byte(`{"process":`+string(spec)+`}`), bnd, false)
		if err != nil || !changed {
			return spec, false, err
		}
		var doc map[string]json.RawMessage
		if err := json.Unmarshal(wrapped, &doc); err != nil {
			return nil, false, err
		}
		return doc["process"], true, nil
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(spec, &doc); err != nil {
		return nil, false, fmt.Errorf("OCI spec: %w", err)
	}
	var proc map[string]json.RawMessage
	if err := json.Unmarshal(doc["process"], &proc); err != nil || proc["capabilities"] == nil {
		return spec, false, nil // no process or no capabilities: nothing to do
	}
	var caps map[string][]string
	if err := json.Unmarshal(proc["capabilities"], &caps); err != nil {
		return nil, false, fmt.Errorf("OCI spec process.capabilities: %w", err)
	}
	changed := false
	for kind, list := range caps {
		kept := list[:0:0]
		for _, c := range list {
			if bnd[c] {
				kept = append(kept, c)
			} else {
				changed = true
			}
		}
		caps[kind] = kept
	}
	if !changed {
		return spec, false, nil
	}
	var err error
	if proc["capabilities"], err = json.Marshal(caps); err != nil {
		return nil, false, err
	}
	if doc["process"], err = json.Marshal(proc); err != nil {
		return nil, false, err
	}
	out, err := json.Marshal(doc)
	return out, true, err
}

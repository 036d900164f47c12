package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/vishvananda/netns"

	"github.com/qubes-netvm/qnet/internal/nsthread"
)

// NS is a named network namespace, as `ip netns` names it.
type NS struct {
	Name string
}

// Path is the namespace's bind mount, usable with setns.
func (n *NS) Path() string {
	return filepath.Join("/run/netns", n.Name)
}

// Exec runs a program inside the namespace (through `ip netns exec`, so
// /sys matches the namespace too) and returns its standard output.
func (n *NS) Exec(name string, args ...string) ([]byte, error) {
	return run(nil, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Do runs fn on an OS thread switched into the namespace. The thread is
// handed back to the Go scheduler only if switching back succeeded; a
// thread stuck in the wrong namespace dies with its goroutine instead.
// Goroutines fn starts run outside the namespace; sockets fn opens stay
// in it.
func (n *NS) Do(fn func() error) error {
	target, err := n.Handle()
	if err != nil {
		return err
	}
	defer target.Close()

	if err := nsthread.In(target, fn); err != nil {
		return fmt.Errorf("in netns %s: %w", n.Name, err)
	}
	return nil
}

// Handle opens the namespace; the caller closes it.
func (n *NS) Handle() (netns.NsHandle, error) {
	h, err := netns.GetFromPath(n.Path())
	if err != nil {
		return h, fmt.Errorf("open netns %s: %w", n.Path(), err)
	}
	return h, nil
}

// IPJSON runs `ip -j <args>` in the namespace and decodes its output into v.
func (n *NS) IPJSON(v any, args ...string) error {
	out, err := run(nil, "ip", append([]string{"-n", n.Name, "-j"}, args...)...)
	return decodeJSON(v, out, err, "ip -j "+strings.Join(args, " ")+" in "+n.Name)
}

// NftJSON runs `nft -j <args>` in the namespace and decodes its output into v.
func (n *NS) NftJSON(v any, args ...string) error {
	out, err := n.Exec("nft", append([]string{"-j"}, args...)...)
	return decodeJSON(v, out, err, "nft -j "+strings.Join(args, " ")+" in "+n.Name)
}

func decodeJSON(v any, out []byte, runErr error, command string) error {
	if runErr != nil {
		return runErr
	}
	if err := json.Unmarshal(out, v); err != nil {
		return fmt.Errorf("decode output of %s: %w", command, err)
	}
	return nil
}

// SetElements lists the elements of an nftables set the way nft prints
// them, e.g. `"vif5.0" . 10.137.0.5`, sorted.
func (n *NS) SetElements(family, table, set string) ([]string, error) {
	var listing struct {
		Nftables []struct {
			Set *struct {
				Type json.RawMessage   `json:"type"`
				Elem []json.RawMessage `json:"elem"`
			} `json:"set"`
		} `json:"nftables"`
	}
	if err := n.NftJSON(&listing, "list", "set", family, table, set); err != nil {
		return nil, err
	}
	for _, obj := range listing.Nftables {
		if obj.Set == nil {
			continue
		}
		elems, err := formatSetElements(obj.Set.Type, obj.Set.Elem)
		if err != nil {
			return nil, fmt.Errorf("set %s %s %s: %w", family, table, set, err)
		}
		return elems, nil
	}
	return nil, fmt.Errorf("set %s %s %s: not in nft output", family, table, set)
}

// formatSetElements renders nft's JSON elements in nft's text syntax:
// components of string types (ifname) are quoted, others are printed as-is.
func formatSetElements(rawType json.RawMessage, rawElems []json.RawMessage) ([]string, error) {
	var types []string
	if err := json.Unmarshal(rawType, &types); err != nil {
		var single string
		if err := json.Unmarshal(rawType, &single); err != nil {
			return nil, fmt.Errorf("decode set type %s: %w", rawType, err)
		}
		types = []string{single}
	}
	elems := make([]string, 0, len(rawElems))
	for _, raw := range rawElems {
		var concat struct {
			Concat []string `json:"concat"`
		}
		var parts []string
		if err := json.Unmarshal(raw, &concat); err == nil && concat.Concat != nil {
			parts = concat.Concat
		} else {
			var single string
			if err := json.Unmarshal(raw, &single); err != nil {
				return nil, fmt.Errorf("unsupported set element %s", raw)
			}
			parts = []string{single}
		}
		if len(parts) != len(types) {
			return nil, fmt.Errorf("element %s has %d parts, set type %s has %d", raw, len(parts), rawType, len(types))
		}
		for i, part := range parts {
			if types[i] == "ifname" || types[i] == "string" {
				parts[i] = `"` + part + `"`
			}
		}
		elems = append(elems, strings.Join(parts, " . "))
	}
	sort.Strings(elems)
	return elems, nil
}

// Sysctl reads /proc/sys/<key> inside the namespace; key uses slashes
// (net/ipv4/conf/vif5.0/proxy_arp) because interface names contain dots.
func (n *NS) Sysctl(key string) (string, error) {
	var value string
	err := n.Do(func() error {
		b, err := os.ReadFile(filepath.Join("/proc/sys", key))
		if err != nil {
			return fmt.Errorf("read sysctl in %s: %w", n.Name, err)
		}
		value = strings.TrimSpace(string(b))
		return nil
	})
	return value, err
}

// SetSysctl writes value to /proc/sys/<key> inside the namespace.
func (n *NS) SetSysctl(key, value string) error {
	return n.Do(func() error {
		if err := os.WriteFile(filepath.Join("/proc/sys", key), []byte(value), 0o644); err != nil {
			return fmt.Errorf("write sysctl %s=%s in %s: %w", key, value, n.Name, err)
		}
		return nil
	})
}

// IPBatch runs iproute2 commands, one per line, in the namespace in one
// process.
func (n *NS) IPBatch(commands ...string) error {
	_, err := run(strings.NewReader(strings.Join(commands, "\n")+"\n"), "ip", "-n", n.Name, "-batch", "-")
	return err
}

// LoadNft loads an nftables script into the namespace with nft -f -.
func (n *NS) LoadNft(script string) error {
	_, err := run(strings.NewReader(script), "ip", "netns", "exec", n.Name, "nft", "-f", "-")
	return err
}

// AwaitPing pings target from the namespace until a reply comes, for at
// most timeout or until ctx ends.
func (n *NS) AwaitPing(ctx context.Context, target string, timeout time.Duration, extra ...string) error {
	deadline := time.Now().Add(timeout)
	for {
		_, err := n.Exec("ping", append([]string{"-c1", "-W1"}, append(extra, target)...)...)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("no reply to ping %s from %s within %s: %w", target, n.Name, timeout, err)
		}
	}
}

// run executes a program and returns its standard output; a failure
// carries the command line and the program's standard error.
func run(stdin *strings.Reader, name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	if stdin != nil {
		cmd.Stdin = stdin
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

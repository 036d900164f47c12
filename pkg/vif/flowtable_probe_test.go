package vif

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// The probe agrees with the running kernel, as nft sees it: where nft
// can create a flowtable (in a namespace of the test's own), Supported
// says yes; where it cannot, no. Runs on the build machines (no
// flowtables) and in the vmtest VM (flowtables as modules).
func TestSupportedMatchesKernel(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	ns := fmt.Sprintf("qnt-ftprobe-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	out, nftErr := exec.Command("ip", "netns", "exec", ns, "nft",
		"add table inet t; add flowtable inet t f { hook ingress priority 0; devices = { lo }; }").CombinedOutput()
	err := RunningKernelConfig().FlowtableSupported()
	switch {
	case nftErr == nil && err != nil:
		t.Errorf("nft creates a flowtable, but Supported says: %v", err)
	case nftErr != nil && !errors.Is(err, ErrNoFlowtable):
		t.Errorf("nft cannot create a flowtable (%v: %s), but Supported says %v", nftErr, out, err)
	}
	t.Logf("nft: %v; Supported: %v", nftErr, err)
}

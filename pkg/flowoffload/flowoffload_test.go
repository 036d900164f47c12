package flowoffload

import (
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// The kernels of these test machines cannot create flowtables, so the
// exact batch is pinned here: any change to the messages shows up as a
// diff against testdata/accel.golden, which was checked against the
// expressions `nft --debug=netlink` prints for upstream's table and is
// exercised on a stock kernel by the vmtest tier.
func TestQueueGolden(t *testing.T) {
	var sent []netlink.Message
	c, err := nftables.New(nftables.WithTestDial(func(req []netlink.Message) ([]netlink.Message, error) {
		sent = append(sent, req...)
		// Acknowledge every message so Flush completes.
		acks := make([]netlink.Message, 0, len(req))
		for _, m := range req {
			if m.Header.Flags&netlink.Acknowledge != 0 {
				acks = append(acks, netlink.Message{Header: netlink.Header{Type: netlink.Error, Sequence: m.Header.Sequence, PID: m.Header.PID}, Data: make([]byte, 4)})
			}
		}
		return acks, nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	if err := Queue(c, []string{"eth0", "lo", "vif12.0"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, m := range sent {
		fmt.Fprintf(&b, "type=%#04x flags=%#04x\n%s", uint16(m.Header.Type), uint16(m.Header.Flags), hex.Dump(m.Data))
	}
	golden := filepath.Join("testdata", "accel.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if b.String() != string(want) {
		t.Errorf("batch differs from %s (run with -update after checking the change):\n%s", golden, b.String())
	}
	// Beyond the bytes: the names, devices and hook values nft would send.
	for _, want := range []string{"qubes-nat-accel", "qubes-accel", "eth0", "vif12.0", "flow_offload", "counter"} {
		if !containsASCII(sent, want) {
			t.Errorf("batch lacks %q", want)
		}
	}
}

func containsASCII(msgs []netlink.Message, s string) bool {
	for _, m := range msgs {
		if strings.Contains(string(m.Data), s) {
			return true
		}
	}
	return false
}

func TestDevices(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"all", "default", "lo", "eth0", "vif3.0", "vif12.0", "bad name", "weird-dash", "vif4.0"} {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	got, err := Devices(dir, "vif4.0")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"eth0", "lo", "vif12.0", "vif3.0"}; !slices.Equal(got, want) {
		t.Errorf("Devices = %v, want %v", got, want)
	}
	if _, err := Devices(filepath.Join(dir, "missing"), ""); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing dir: error %v", err)
	}
}

// parseDevices reads a flowtable message as the kernel dumps it.
func TestParseDevices(t *testing.T) {
	names := []netlink.Attribute{
		{Type: nftables.NFTA_DEVICE_NAME, Data: []byte("eth0\x00")},
		{Type: nftables.NFTA_DEVICE_NAME, Data: []byte("vif5.0\x00")},
	}
	devs, err := netlink.MarshalAttributes(names)
	if err != nil {
		t.Fatal(err)
	}
	hook, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: nftables.NFTA_FLOWTABLE_HOOK_NUM, Data: []byte{0, 0, 0, 0}},
		{Type: nftables.NFTA_FLOWTABLE_PRIORITY, Data: []byte{0, 0, 0, 0}},
		{Type: 0x8000 | nftables.NFTA_FLOWTABLE_DEVS, Data: devs},
	})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: nftables.NFTA_FLOWTABLE_TABLE, Data: []byte(TableName + "\x00")},
		{Type: nftables.NFTA_FLOWTABLE_NAME, Data: []byte(FlowtableName + "\x00")},
		{Type: 0x8000 | nftables.NFTA_FLOWTABLE_HOOK, Data: hook},
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseDevices(msg)
	if err != nil || !slices.Equal(got, []string{"eth0", "vif5.0"}) {
		t.Fatalf("parseDevices = %v, %v", got, err)
	}
}

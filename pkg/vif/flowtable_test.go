package vif

import (
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/qubes-netvm/qnet/internal/nfnl"
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
	if err := QueueOffloadTable(c, []string{"eth0", "lo", "vif12.0"}, true); err != nil {
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
	got, err := FlowtableDevices(dir, "vif4.0")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"eth0", "lo", "vif12.0", "vif3.0"}; !slices.Equal(got, want) {
		t.Errorf("FlowtableDevices = %v, want %v", got, want)
	}
	if _, err := FlowtableDevices(filepath.Join(dir, "missing"), ""); err == nil || !strings.Contains(err.Error(), "missing") {
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
		{Type: nftables.NFTA_FLOWTABLE_TABLE, Data: []byte(OffloadTable + "\x00")},
		{Type: nftables.NFTA_FLOWTABLE_NAME, Data: []byte(OffloadFlowtable + "\x00")},
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

// Creating the table when it is absent sends additions only (no delete,
// which would make the kernel wait for an RCU grace period), and the
// removal of one device names just that device.
func TestCreateAndRemoveDeviceMessages(t *testing.T) {
	msgs, err := nfnl.Queued(func(c *nftables.Conn) error { return QueueOffloadTable(c, []string{"eth0", "vif3.0"}, false) })
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		switch uint16(m.Header.Type) & 0xff {
		case unix.NFT_MSG_DELTABLE, unix.NFT_MSG_DELCHAIN, unix.NFT_MSG_DELRULE, unix.NFT_MSG_DELSET, nftables.NFT_MSG_DELFLOWTABLE:
			t.Errorf("creation batch holds a deletion: type %#x", uint16(m.Header.Type))
		}
	}
	add, err := addFlowtableDevices([]string{"vif7.0"})
	if err != nil || len(add) != 1 || uint16(add[0].Header.Type)&0xff != nftables.NFT_MSG_NEWFLOWTABLE || add[0].Header.Flags&netlink.Excl != 0 || !containsASCII(add, "vif7.0") {
		t.Errorf("AddDevices = %+v, %v: want one NEWFLOWTABLE without EXCL naming vif7.0", add, err)
	}
	del, err := removeFlowtableDevices([]string{"vif7.0"})
	if err != nil || uint16(del.Header.Type)&0xff != nftables.NFT_MSG_DELFLOWTABLE || !containsASCII([]netlink.Message{del}, "vif7.0") {
		t.Errorf("RemoveDevices = %+v, %v", del, err)
	}
	devs, err := parseDevices(del.Data[4:])
	if err != nil || !slices.Equal(devs, []string{"vif7.0"}) {
		t.Errorf("removal names devices %v (%v), want [vif7.0]", devs, err)
	}
}

// Supported reads the kernel configuration: not set means no, built in
// or a module on disk means yes, nothing readable means let the kernel
// decide.
func TestSupported(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	unset := write("config-unset", "CONFIG_NF_TABLES_INET=y\n# CONFIG_NF_FLOW_TABLE is not set\n")
	builtin := write("config-y", "CONFIG_NF_FLOW_TABLE=y\nCONFIG_NF_FLOW_TABLE_INET=y\n")
	module := write("config-m", "CONFIG_NF_FLOW_TABLE_INET=m\n")
	none := filepath.Join(dir, "sys")
	if err := (KernelConfig{SysModule: none, Configs: []string{filepath.Join(dir, "missing"), unset}}).FlowtableSupported(); !errors.Is(err, ErrNoFlowtable) {
		t.Errorf("not set: %v", err)
	}
	if err := (KernelConfig{SysModule: none, Configs: []string{builtin}}).FlowtableSupported(); err != nil {
		t.Errorf("built in: %v", err)
	}
	if err := (KernelConfig{SysModule: none, Configs: []string{module}, Modules: dir}).FlowtableSupported(); !errors.Is(err, ErrNoFlowtable) {
		t.Errorf("module without file: %v", err)
	}
	ko := filepath.Join(dir, "kernel/net/netfilter")
	if err := os.MkdirAll(ko, 0o755); err != nil {
		t.Fatal(err)
	}
	write("kernel/net/netfilter/nf_flow_table_inet.ko.xz", "")
	if err := (KernelConfig{SysModule: none, Configs: []string{module}, Modules: dir}).FlowtableSupported(); err != nil {
		t.Errorf("module on disk: %v", err)
	}
	if err := (KernelConfig{SysModule: none}).FlowtableSupported(); err != nil {
		t.Errorf("nothing to read: %v", err)
	}
	if err := os.MkdirAll(filepath.Join(none, "nf_flow_table_inet"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := (KernelConfig{SysModule: none, Configs: []string{unset}}).FlowtableSupported(); err != nil {
		t.Errorf("module loaded: %v", err)
	}
}

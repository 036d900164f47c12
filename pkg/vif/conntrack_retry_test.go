package vif

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/mdlayher/netlink"

	"github.com/qubes-netvm/qnet/internal/nfnl"
)

// fakeConn answers dumps from a script: each dump returns one entry of
// the address and is flagged interrupted while interrupts lasts.
type fakeConn struct {
	addr       netip.Addr
	interrupts int
	dumps      int
	deleted    int
}

func (f *fakeConn) Dump(netlink.Message) ([][]byte, error) {
	f.dumps++
	entry, err := nfnl.Encode(func(ae *netlink.AttributeEncoder) {
		ae.Nested(attrTupleOrig, func(t *netlink.AttributeEncoder) error {
			t.Nested(attrTupleIP, func(ip *netlink.AttributeEncoder) error {
				ip.Bytes(attrV4Src, f.addr.AsSlice())
				ip.Bytes(attrV4Dst, []byte{192, 0, 2, 1})
				return nil
			})
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	if f.interrupts > 0 {
		f.interrupts--
		return [][]byte{entry}, nfnl.ErrDumpInterrupted
	}
	return [][]byte{entry}, nil
}

func (f *fakeConn) Each(msgs []netlink.Message) ([]error, error) {
	f.deleted += len(msgs)
	return make([]error, len(msgs)), nil
}

// An interrupted dump (vishvananda/netlink's ErrDumpInterrupted case) is
// retried, deleting what each attempt returned; it fails only when every
// attempt is interrupted.
func TestInterruptedDumpIsRetried(t *testing.T) {
	a := netip.MustParseAddr("10.137.0.9")
	qs, err := conntrackQueries([]netip.Addr{a})
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeConn{addr: a, interrupts: 2}
	n, err := runConntrackQuery(f, qs[0])
	if err != nil || f.dumps != 3 || n != 3 {
		t.Errorf("purgeOne = %d, %v after %d dumps; want 3 deletions after 3 dumps", n, err, f.dumps)
	}

	f = &fakeConn{addr: a, interrupts: conntrackAttempts}
	_, err = runConntrackQuery(f, qs[0])
	if !errors.Is(err, nfnl.ErrDumpInterrupted) || !strings.Contains(err.Error(), "5 attempts") || f.dumps != conntrackAttempts {
		t.Errorf("always interrupted: %v after %d dumps", err, f.dumps)
	}
}

// Package conntrack forgets the tracked connections of given addresses,
// as `conntrack -D -s <addr>` and `conntrack -D -d <addr>` do, at a cost
// that follows the number of those connections rather than the size of
// the table.
//
// For each IPv4 address and direction it asks ctnetlink for a dump
// filtered in the kernel on the original tuple (CTA_FILTER, kernels since
// 5.8), so only the address's entries cross into user space, and deletes
// each one by its tuple. A kernel without CTA_FILTER ignores the attribute
// and dumps the whole family; every entry returned is therefore checked
// here too, which makes that the fallback for older kernels.
//
// IPv6 addresses get a dump of the IPv6 family only, filtered here: the
// kernel's IPv6 tuple filter is inverted (ctnetlink_filter_match_tuple
// skips the entries whose address EQUALS the filter's; seen on 6.18), so
// a filtered IPv6 dump would return everything but the client's entries.
//
// A filtered flush would save the dump, but the kernel refuses CTA_FILTER
// on a flush (EOPNOTSUPP, in 6.18's source) and an older kernel would
// flush everything, so it is not used.
package conntrack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/qubes-netvm/qnet/internal/nfnl"
)

// ctnetlink message types and attributes (linux/netfilter/nfnetlink_conntrack.h).
const (
	msgGet    = 1 // IPCTNL_MSG_CT_GET
	msgDelete = 2 // IPCTNL_MSG_CT_DELETE

	attrTupleOrig = 1  // CTA_TUPLE_ORIG
	attrZone      = 18 // CTA_ZONE
	attrFilter    = 25 // CTA_FILTER

	attrTupleIP = 1 // CTA_TUPLE_IP
	attrV4Src   = 1 // CTA_IP_V4_SRC
	attrV4Dst   = 2 // CTA_IP_V4_DST
	attrV6Src   = 3 // CTA_IP_V6_SRC
	attrV6Dst   = 4 // CTA_IP_V6_DST

	attrFilterOrigFlags = 1      // CTA_FILTER_ORIG_FLAGS
	filterIPSrc         = 1 << 0 // CTA_FILTER_F_CTA_IP_SRC
	filterIPDst         = 1 << 1 // CTA_FILTER_F_CTA_IP_DST
)

// MaxAttempts bounds the dumps of one address and direction: a dump the
// kernel flags as interrupted (the table was resized under it) is done
// again after deleting what it returned.
const MaxAttempts = 5

// Conn is what a purge needs from the netfilter socket.
type Conn interface {
	Dump(m netlink.Message) ([][]byte, error)
	Each(msgs []netlink.Message) ([]error, error)
}

// Purge deletes every entry whose original source or destination is one
// of addrs and returns how many it deleted.
func Purge(c Conn, addrs []netip.Addr) (int, error) {
	deleted := 0
	for _, a := range addrs {
		for _, dir := range []direction{source, destination} {
			n, err := purgeOne(c, a, dir)
			deleted += n
			if err != nil {
				return deleted, fmt.Errorf("purge conntrack entries with original %s %s: %w", dir, a, err)
			}
		}
	}
	return deleted, nil
}

type direction int

const (
	source direction = iota
	destination
)

func (d direction) String() string {
	if d == source {
		return "source"
	}
	return "destination"
}

func family(a netip.Addr) uint8 {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

func addrAttr(a netip.Addr, dir direction) uint16 {
	switch {
	case a.Is4() && dir == source:
		return attrV4Src
	case a.Is4():
		return attrV4Dst
	case dir == source:
		return attrV6Src
	}
	return attrV6Dst
}

// dumpRequest is `conntrack -L -s|-d addr` as a kernel-side filter.
func dumpRequest(a netip.Addr, dir direction) (netlink.Message, error) {
	if a.Is6() {
		return nfnl.Request(nfnl.SubsysCtnetlink, msgGet, family(a), 0, nil), nil
	}
	flag := uint32(filterIPSrc)
	if dir == destination {
		flag = filterIPDst
	}
	attrs, err := nfnl.Encode(func(ae *netlink.AttributeEncoder) {
		ae.Nested(attrTupleOrig, func(t *netlink.AttributeEncoder) error {
			t.Nested(attrTupleIP, func(ip *netlink.AttributeEncoder) error {
				ip.Bytes(addrAttr(a, dir), a.AsSlice())
				return nil
			})
			return nil
		})
		ae.Nested(attrFilter, func(f *netlink.AttributeEncoder) error {
			// nla_get_u32: host byte order, unlike the tuple's fields.
			f.Bytes(attrFilterOrigFlags, nativeUint32(flag))
			return nil
		})
	})
	if err != nil {
		return netlink.Message{}, err
	}
	return nfnl.Request(nfnl.SubsysCtnetlink, msgGet, family(a), 0, attrs), nil
}

func purgeOne(c Conn, a netip.Addr, dir direction) (int, error) {
	req, err := dumpRequest(a, dir)
	if err != nil {
		return 0, err
	}
	deleted := 0
	for attempt := 1; ; attempt++ {
		entries, dumpErr := c.Dump(req)
		if dumpErr != nil && !errors.Is(dumpErr, nfnl.ErrDumpInterrupted) {
			return deleted, dumpErr
		}
		dels, err := deletions(entries, a, dir)
		if err != nil {
			return deleted, err
		}
		errs, err := c.Each(dels)
		if err != nil {
			return deleted, err
		}
		for _, e := range errs {
			switch {
			case e == nil:
				deleted++
			case errors.Is(e, unix.ENOENT): // gone meanwhile
			default:
				return deleted, fmt.Errorf("delete entry: %w", e)
			}
		}
		if dumpErr == nil {
			return deleted, nil
		}
		if attempt == MaxAttempts {
			return deleted, fmt.Errorf("dump still interrupted after %d attempts: %w", attempt, dumpErr)
		}
	}
}

// deletions returns a delete request for each dumped entry that matches
// (all of them on a kernel that filtered the dump).
func deletions(entries [][]byte, a netip.Addr, dir direction) ([]netlink.Message, error) {
	var msgs []netlink.Message
	for _, e := range entries {
		tuple, zone, match, err := parseEntry(e, a, dir)
		if err != nil {
			return nil, fmt.Errorf("decode conntrack entry: %w", err)
		}
		if !match {
			continue
		}
		attrs, err := nfnl.Encode(func(ae *netlink.AttributeEncoder) {
			ae.Bytes(netlink.Nested|attrTupleOrig, tuple)
			if zone != nil {
				ae.Bytes(attrZone, zone)
			}
		})
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, nfnl.Request(nfnl.SubsysCtnetlink, msgDelete, family(a), 0, attrs))
	}
	return msgs, nil
}

// parseEntry returns the entry's original tuple and zone as the kernel
// sent them, and whether the tuple's address in direction dir is a.
func parseEntry(b []byte, a netip.Addr, dir direction) (tuple, zone []byte, match bool, err error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return nil, nil, false, err
	}
	for ad.Next() {
		switch ad.Type() {
		case attrTupleOrig:
			tuple = ad.Bytes()
			match, err = tupleHas(tuple, a, dir)
			if err != nil {
				return nil, nil, false, err
			}
		case attrZone:
			zone = ad.Bytes()
		}
	}
	if err := ad.Err(); err != nil {
		return nil, nil, false, err
	}
	if tuple == nil {
		return nil, nil, false, errors.New("no original tuple")
	}
	return tuple, zone, match, nil
}

func tupleHas(tuple []byte, a netip.Addr, dir direction) (bool, error) {
	ad, err := netlink.NewAttributeDecoder(tuple)
	if err != nil {
		return false, err
	}
	match := false
	for ad.Next() {
		if ad.Type() != attrTupleIP {
			continue
		}
		ad.Nested(func(ip *netlink.AttributeDecoder) error {
			for ip.Next() {
				if ip.Type() == addrAttr(a, dir) {
					got, ok := netip.AddrFromSlice(ip.Bytes())
					match = ok && got == a
				}
			}
			return nil
		})
	}
	return match, ad.Err()
}

func nativeUint32(v uint32) []byte {
	b := make([]byte, 4)
	binary.NativeEndian.PutUint32(b, v)
	return b
}

// This file forgets the tracked connections of given addresses,
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
// The IPv6 addresses get one dump of the IPv6 family, filtered here: the
// kernel's IPv6 tuple filter is inverted (ctnetlink_filter_match_tuple
// skips the entries whose address EQUALS the filter's; seen on 6.18), so
// a filtered IPv6 dump would return everything but the client's entries.
//
// A filtered flush would save the dump, but the kernel refuses CTA_FILTER
// on a flush (EOPNOTSUPP, in 6.18's source) and an older kernel would
// flush everything, so it is not used.

package vif

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"

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

// conntrackAttempts bounds the dumps of one address and direction: a dump the
// kernel flags as interrupted (the table was resized under it) is done
// again after deleting what it returned.
const conntrackAttempts = 5

// ConntrackConn is what a purge needs from the netfilter socket.
type ConntrackConn interface {
	Dump(m netlink.Message) ([][]byte, error)
	Each(msgs []netlink.Message) ([]error, error)
}

// conntrackQuery is one dump and the entries of it to delete.
type conntrackQuery struct {
	what  string // for errors: "original source 10.137.0.5"
	req   netlink.Message
	match func(src, dst netip.Addr) bool
}

// conntrackQueries returns, for each IPv4 address, a dump filtered on its original
// source and one on its original destination, and for all the IPv6
// addresses one dump of the family (see the comment at the top of this file).
func conntrackQueries(addrs []netip.Addr) ([]conntrackQuery, error) {
	var qs []conntrackQuery
	var v6 []netip.Addr
	for _, a := range addrs {
		if a.Is6() {
			v6 = append(v6, a)
			continue
		}
		for _, dir := range []direction{source, destination} {
			req, err := filteredDump(a, dir)
			if err != nil {
				return nil, err
			}
			qs = append(qs, conntrackQuery{
				what: fmt.Sprintf("original %s %s", dir, a),
				req:  req,
				match: func(src, dst netip.Addr) bool {
					if dir == source {
						return src == a
					}
					return dst == a
				},
			})
		}
	}
	if len(v6) > 0 {
		qs = append(qs, conntrackQuery{
			what: fmt.Sprintf("original source or destination %v", v6),
			req:  nfnl.Request(nfnl.SubsysCtnetlink, msgGet, unix.AF_INET6, 0, nil),
			match: func(src, dst netip.Addr) bool {
				return slices.Contains(v6, src) || slices.Contains(v6, dst)
			},
		})
	}
	return qs, nil
}

// PurgeConnections deletes every entry whose original source or destination is one
// of addrs and returns how many it deleted. Each dump walks the kernel's
// whole hash table; they run one after the other, because two at once on
// two sockets take as long (measured on 6.18: ~16 ms a walk of 262144
// buckets either way, both walks contending for the same bucket locks).
func PurgeConnections(c ConntrackConn, addrs []netip.Addr) (int, error) {
	qs, err := conntrackQueries(addrs)
	if err != nil {
		return 0, err
	}
	total := 0
	var errs []error
	for _, q := range qs {
		n, err := runConntrackQuery(c, q)
		total += n
		if err != nil {
			errs = append(errs, fmt.Errorf("purge conntrack entries with %s: %w", q.what, err))
		}
	}
	return total, errors.Join(errs...)
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

// filteredDump is `conntrack -L -s|-d addr` (IPv4) as a kernel-side filter.
func filteredDump(a netip.Addr, dir direction) (netlink.Message, error) {
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
	return nfnl.Request(nfnl.SubsysCtnetlink, msgGet, unix.AF_INET, 0, attrs), nil
}

// run dumps, deletes the matching entries, and dumps again while the
// kernel flags the dump as interrupted (at most conntrackAttempts dumps).
func runConntrackQuery(c ConntrackConn, q conntrackQuery) (int, error) {
	deleted := 0
	for attempt := 1; ; attempt++ {
		entries, dumpErr := c.Dump(q.req)
		if dumpErr != nil && !errors.Is(dumpErr, nfnl.ErrDumpInterrupted) {
			return deleted, dumpErr
		}
		dels, err := deletions(entries, q.match, q.req.Data[0])
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
		if attempt == conntrackAttempts {
			return deleted, fmt.Errorf("dump still interrupted after %d attempts: %w", attempt, dumpErr)
		}
	}
}

// deletions returns a delete request for each dumped entry that matches
// (all of them on a kernel that filtered the dump).
func deletions(entries [][]byte, match func(src, dst netip.Addr) bool, family uint8) ([]netlink.Message, error) {
	var msgs []netlink.Message
	for _, e := range entries {
		tuple, zone, src, dst, err := parseEntry(e)
		if err != nil {
			return nil, fmt.Errorf("decode conntrack entry: %w", err)
		}
		if !match(src, dst) {
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
		msgs = append(msgs, nfnl.Request(nfnl.SubsysCtnetlink, msgDelete, family, 0, attrs))
	}
	return msgs, nil
}

// parseEntry returns the entry's original tuple and zone as the kernel
// sent them, and the tuple's source and destination addresses.
func parseEntry(b []byte) (tuple, zone []byte, src, dst netip.Addr, err error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return nil, nil, src, dst, err
	}
	for ad.Next() {
		switch ad.Type() {
		case attrTupleOrig:
			tuple = ad.Bytes()
		case attrZone:
			zone = ad.Bytes()
		}
	}
	if err := ad.Err(); err != nil {
		return nil, nil, src, dst, err
	}
	if tuple == nil {
		return nil, nil, src, dst, errors.New("no original tuple")
	}
	src, dst, err = tupleAddrs(tuple)
	return tuple, zone, src, dst, err
}

func tupleAddrs(tuple []byte) (src, dst netip.Addr, err error) {
	ad, err := netlink.NewAttributeDecoder(tuple)
	if err != nil {
		return src, dst, err
	}
	for ad.Next() {
		if ad.Type() != attrTupleIP {
			continue
		}
		ad.Nested(func(ip *netlink.AttributeDecoder) error {
			for ip.Next() {
				a, _ := netip.AddrFromSlice(ip.Bytes())
				switch ip.Type() {
				case attrV4Src, attrV6Src:
					src = a
				case attrV4Dst, attrV6Dst:
					dst = a
				}
			}
			return nil
		})
	}
	return src, dst, ad.Err()
}

func nativeUint32(v uint32) []byte {
	b := make([]byte, 4)
	binary.NativeEndian.PutUint32(b, v)
	return b
}

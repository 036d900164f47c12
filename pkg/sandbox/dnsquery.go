package sandbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"time"
)

// queryTimeout bounds one DNS exchange; a resolver in the sandbox answers
// in well under a millisecond, so this only matters when nothing answers.
const queryTimeout = 2 * time.Second

// DNS wire constants (RFC 1035).
const (
	dnsHeaderLen   = 12
	dnsFlagQR      = 0x8000
	dnsFlagRD      = 0x0100
	dnsRcodeMask   = 0x000f
	dnsTypeA       = 1
	dnsClassIN     = 1
	dnsPointerMask = 0xc0
)

// Query asks server (port 53) for the A record of name from inside ns,
// over TCP or UDP, and returns the first address in the answer. The
// sandbox's resolvers answer whoami.test with their own address, so the
// answer tells which resolver was reached.
func Query(ns *NS, server, name string, tcp bool) (string, error) {
	id := uint16(rand.Uint32())
	query, err := buildQuery(id, name)
	if err != nil {
		return "", err
	}
	network := "udp"
	if tcp {
		network = "tcp"
	}
	var response []byte
	err = ns.Do(func() error {
		var exchangeErr error
		response, exchangeErr = exchange(network, net.JoinHostPort(server, "53"), query)
		return exchangeErr
	})
	if err != nil {
		return "", fmt.Errorf("query %s A over %s to %s in %s: %w", name, network, server, ns.Name, err)
	}
	addr, err := firstA(response, id)
	if err != nil {
		return "", fmt.Errorf("query %s A over %s to %s in %s: %w", name, network, server, ns.Name, err)
	}
	return addr, nil
}

// exchange sends one query and reads one response; over TCP both carry a
// two-byte length prefix.
func exchange(network, server string, query []byte) ([]byte, error) {
	conn, err := net.DialTimeout(network, server, queryTimeout)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(queryTimeout)); err != nil {
		return nil, err
	}
	if network == "udp" {
		if _, err := conn.Write(query); err != nil {
			return nil, err
		}
		buf := make([]byte, 65535)
		n, err := conn.Read(buf)
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
	if _, err := conn.Write(binary.BigEndian.AppendUint16(nil, uint16(len(query)))); err != nil {
		return nil, err
	}
	if _, err := conn.Write(query); err != nil {
		return nil, err
	}
	var length [2]byte
	if _, err := io.ReadFull(conn, length[:]); err != nil {
		return nil, err
	}
	buf := make([]byte, binary.BigEndian.Uint16(length[:]))
	if _, err := io.ReadFull(conn, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

// buildQuery encodes a recursive query for the A record of name.
func buildQuery(id uint16, name string) ([]byte, error) {
	msg := binary.BigEndian.AppendUint16(nil, id)
	msg = binary.BigEndian.AppendUint16(msg, dnsFlagRD)
	msg = binary.BigEndian.AppendUint16(msg, 1) // one question
	msg = append(msg, 0, 0, 0, 0, 0, 0)         // no answer, authority or additional records
	for _, label := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		if len(label) == 0 || len(label) > 63 {
			return nil, fmt.Errorf("bad DNS name %q", name)
		}
		msg = append(msg, byte(len(label)))
		msg = append(msg, label...)
	}
	msg = append(msg, 0)
	msg = binary.BigEndian.AppendUint16(msg, dnsTypeA)
	return binary.BigEndian.AppendUint16(msg, dnsClassIN), nil
}

var errTruncated = errors.New("truncated DNS message")

// firstA returns the first IN A record in the answer section of a response
// to query id.
func firstA(msg []byte, id uint16) (string, error) {
	if len(msg) < dnsHeaderLen {
		return "", errTruncated
	}
	if got := binary.BigEndian.Uint16(msg); got != id {
		return "", fmt.Errorf("response id %d, want %d", got, id)
	}
	flags := binary.BigEndian.Uint16(msg[2:])
	if flags&dnsFlagQR == 0 {
		return "", errors.New("message is not a response")
	}
	if rcode := flags & dnsRcodeMask; rcode != 0 {
		return "", fmt.Errorf("response code %d", rcode)
	}
	questions := int(binary.BigEndian.Uint16(msg[4:]))
	answers := int(binary.BigEndian.Uint16(msg[6:]))
	off := dnsHeaderLen
	for range questions {
		next, err := skipName(msg, off)
		if err != nil {
			return "", err
		}
		off = next + 4 // type, class
	}
	for range answers {
		next, err := skipName(msg, off)
		if err != nil {
			return "", err
		}
		if next+10 > len(msg) {
			return "", errTruncated
		}
		rrType := binary.BigEndian.Uint16(msg[next:])
		rrClass := binary.BigEndian.Uint16(msg[next+2:])
		rdLen := int(binary.BigEndian.Uint16(msg[next+8:]))
		rdata := next + 10
		if rdata+rdLen > len(msg) {
			return "", errTruncated
		}
		if rrType == dnsTypeA && rrClass == dnsClassIN && rdLen == 4 {
			return netip.AddrFrom4([4]byte(msg[rdata : rdata+4])).String(), nil
		}
		off = rdata + rdLen
	}
	return "", errors.New("no A record in the answer")
}

// skipName returns the offset just past the (possibly compressed) domain
// name starting at off.
func skipName(msg []byte, off int) (int, error) {
	for {
		if off >= len(msg) {
			return 0, errTruncated
		}
		length := int(msg[off])
		switch {
		case length == 0:
			return off + 1, nil
		case length&dnsPointerMask == dnsPointerMask:
			if off+2 > len(msg) {
				return 0, errTruncated
			}
			return off + 2, nil
		default:
			off += 1 + length
		}
	}
}

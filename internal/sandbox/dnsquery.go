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

	"golang.org/x/net/dns/dnsmessage"
)

// queryTimeout bounds one DNS exchange; a resolver in the sandbox answers
// in well under a millisecond, so this only matters when nothing answers.
const queryTimeout = 2 * time.Second

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
	if err == nil {
		var addr string
		if addr, err = firstA(response, id); err == nil {
			return addr, nil
		}
	}
	return "", fmt.Errorf("query %s A over %s to %s in %s: %w", name, network, server, ns.Name, err)
}

// exchange sends one query and reads one response; over TCP both carry a
// two-byte length prefix (RFC 1035 4.2.2).
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
	fqdn := strings.TrimSuffix(name, ".") + "."
	qname, err := dnsmessage.NewName(fqdn)
	if err == nil && fqdn == "." {
		err = errors.New("empty name")
	}
	if err != nil {
		return nil, fmt.Errorf("bad DNS name %q: %w", name, err)
	}
	msg := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: id, RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: qname, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}},
	}
	query, err := msg.Pack()
	if err != nil {
		return nil, fmt.Errorf("bad DNS name %q: %w", name, err)
	}
	return query, nil
}

// firstA returns the first IN A record in the answer section of a response
// to query id.
func firstA(msg []byte, id uint16) (string, error) {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	switch {
	case err != nil:
		return "", err
	case h.ID != id:
		return "", fmt.Errorf("response id %d, want %d", h.ID, id)
	case !h.Response:
		return "", errors.New("message is not a response")
	case h.RCode != dnsmessage.RCodeSuccess:
		return "", fmt.Errorf("response code %d (%v)", h.RCode, h.RCode)
	}
	if err := p.SkipAllQuestions(); err != nil {
		return "", err
	}
	for {
		rr, err := p.AnswerHeader()
		if errors.Is(err, dnsmessage.ErrSectionDone) {
			return "", errors.New("no A record in the answer")
		}
		if err != nil {
			return "", err
		}
		if rr.Type != dnsmessage.TypeA || rr.Class != dnsmessage.ClassINET {
			if err := p.SkipAnswer(); err != nil {
				return "", err
			}
			continue
		}
		a, err := p.AResource()
		if err != nil {
			return "", err
		}
		return netip.AddrFrom4(a.A).String(), nil
	}
}

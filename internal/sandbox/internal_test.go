package sandbox

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// response packs a response to query id 7 for whoami.test with the given
// header and answer records.
func response(t *testing.T, h dnsmessage.Header, answers ...dnsmessage.Resource) []byte {
	t.Helper()
	h.ID = 7
	name := dnsmessage.MustNewName("whoami.test.")
	for i := range answers {
		answers[i].Header.Name, answers[i].Header.Class = name, dnsmessage.ClassINET
	}
	msg := dnsmessage.Message{
		Header:    h,
		Questions: []dnsmessage.Question{{Name: name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}},
		Answers:   answers,
	}
	b, err := msg.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func a(addr ...byte) dnsmessage.Resource {
	return dnsmessage.Resource{Body: &dnsmessage.AResource{A: [4]byte(addr)}}
}

func TestFirstA(t *testing.T) {
	ok := dnsmessage.Header{Response: true, RecursionDesired: true}
	cname := dnsmessage.Resource{Body: &dnsmessage.CNAMEResource{CNAME: dnsmessage.MustNewName("host.test.")}}
	aaaa := dnsmessage.Resource{Body: &dnsmessage.AAAAResource{AAAA: [16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 1}}}
	nxdomain := ok
	nxdomain.RCode = dnsmessage.RCodeNameError
	tests := []struct {
		name    string
		msg     []byte
		want    string
		wantErr string
	}{
		{"one A", response(t, ok, a(198, 51, 100, 53)), "198.51.100.53", ""},
		{"A after CNAME and AAAA", response(t, ok, cname, aaaa, a(203, 0, 113, 1)), "203.0.113.1", ""},
		{"first of two", response(t, ok, a(1, 2, 3, 4), a(5, 6, 7, 8)), "1.2.3.4", ""},
		{"NXDOMAIN", response(t, nxdomain), "", "response code 3"},
		{"no answer", response(t, ok), "", "no A record"},
		{"not a response", response(t, dnsmessage.Header{RecursionDesired: true}), "", "not a response"},
		{"wrong id", append([]byte{0, 8}, response(t, ok)[2:]...), "", "response id 8"},
		{"short header", []byte{0, 7, 0x81}, "", "insufficient data"},
		{"truncated rdata", response(t, ok, a(1, 2, 3, 4))[:40], "", "insufficient data"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := firstA(tc.msg, 7)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("firstA = %q, %v; want error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("firstA = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// TestBuildQuery checks the query's bytes against RFC 1035's layout written
// out by hand, not against the library that encodes it.
func TestBuildQuery(t *testing.T) {
	tests := []struct {
		name    string
		want    []byte // the question section
		wantErr bool
	}{
		{"host.test", []byte{4, 'h', 'o', 's', 't', 4, 't', 'e', 's', 't', 0, 0, 1, 0, 1}, false},
		{"host.test.", []byte{4, 'h', 'o', 's', 't', 4, 't', 'e', 's', 't', 0, 0, 1, 0, 1}, false},
		{"a..test", nil, true},
		{"", nil, true},
		{".", nil, true},
		{strings.Repeat("x", 64) + ".test", nil, true},
	}
	const headerLen = 12
	for _, tc := range tests {
		got, err := buildQuery(0x1234, tc.name)
		if tc.wantErr {
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", tc.name)) {
				t.Errorf("buildQuery(%q) = % x, %v; want an error naming it", tc.name, got, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("buildQuery(%q): %v", tc.name, err)
		}
		header := []byte{0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0}
		if len(got) < headerLen || !slices.Equal(got[:headerLen], header) || !slices.Equal(got[headerLen:], tc.want) {
			t.Errorf("buildQuery(%q) = % x, want % x % x", tc.name, got, header, tc.want)
		}
	}
}

func TestFormatSetElements(t *testing.T) {
	tests := []struct {
		name, typ, elems string
		want             []string
	}{
		{"concat sorted", `["ifname","ipv4_addr"]`, `[{"concat":["vif6.0","10.137.0.6"]},{"concat":["vif5.0","10.137.0.5"]}]`,
			[]string{`"vif5.0" . 10.137.0.5`, `"vif6.0" . 10.137.0.6`}},
		{"ipv6 concat", `["ifname","ipv6_addr"]`, `[{"concat":["vif5.0","fd09:24ef:4179::a89:5"]}]`,
			[]string{`"vif5.0" . fd09:24ef:4179::a89:5`}},
		{"plain", `"ipv4_addr"`, `["10.137.0.5"]`, []string{"10.137.0.5"}},
		{"empty", `"ipv4_addr"`, `null`, []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var elems []json.RawMessage
			if err := json.Unmarshal([]byte(tc.elems), &elems); err != nil {
				t.Fatal(err)
			}
			got, err := formatSetElements(json.RawMessage(tc.typ), elems)
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("formatSetElements = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if _, err := formatSetElements(json.RawMessage(`["ifname","ipv4_addr"]`), []json.RawMessage{json.RawMessage(`"10.137.0.5"`)}); err == nil {
		t.Error("element with the wrong arity accepted")
	}
}

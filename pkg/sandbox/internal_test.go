package sandbox

import (
	"encoding/binary"
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// response builds a DNS response to query id 7 for whoami.test with the
// given flags and answer records.
func response(flags uint16, answers ...[]byte) []byte {
	q, _ := buildQuery(7, "whoami.test")
	binary.BigEndian.PutUint16(q[2:], flags)
	binary.BigEndian.PutUint16(q[6:], uint16(len(answers)))
	for _, a := range answers {
		q = append(q, a...)
	}
	return q
}

// record is one resource record whose owner is a pointer to the question name.
func record(rrType uint16, rdata ...byte) []byte {
	rr := []byte{0xc0, dnsHeaderLen}
	rr = binary.BigEndian.AppendUint16(rr, rrType)
	rr = binary.BigEndian.AppendUint16(rr, dnsClassIN)
	rr = append(rr, 0, 0, 0, 60)
	rr = binary.BigEndian.AppendUint16(rr, uint16(len(rdata)))
	return append(rr, rdata...)
}

func TestFirstA(t *testing.T) {
	const ok = dnsFlagQR | dnsFlagRD
	cname := []byte{4, 'h', 'o', 's', 't', 0xc0, dnsHeaderLen}
	tests := []struct {
		name    string
		msg     []byte
		want    string
		wantErr string
	}{
		{"one A", response(ok, record(dnsTypeA, 198, 51, 100, 53)), "198.51.100.53", ""},
		{"A after CNAME", response(ok, record(5, cname...), record(dnsTypeA, 203, 0, 113, 1)), "203.0.113.1", ""},
		{"first of two", response(ok, record(dnsTypeA, 1, 2, 3, 4), record(dnsTypeA, 5, 6, 7, 8)), "1.2.3.4", ""},
		{"NXDOMAIN", response(ok | 3), "", "response code 3"},
		{"no answer", response(ok), "", "no A record"},
		{"not a response", response(dnsFlagRD), "", "not a response"},
		{"wrong id", append([]byte{0, 8}, response(ok)[2:]...), "", "response id 8"},
		{"short header", []byte{0, 7, 0x81}, "", "truncated"},
		{"truncated rdata", response(ok, record(dnsTypeA, 1, 2, 3, 4))[:40], "", "truncated"},
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
		{strings.Repeat("x", 64) + ".test", nil, true},
	}
	for _, tc := range tests {
		got, err := buildQuery(0x1234, tc.name)
		if tc.wantErr {
			if err == nil {
				t.Errorf("buildQuery(%q) succeeded, want an error", tc.name)
			}
			continue
		}
		if err != nil {
			t.Fatalf("buildQuery(%q): %v", tc.name, err)
		}
		header := []byte{0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0}
		if !slices.Equal(got[:dnsHeaderLen], header) || !slices.Equal(got[dnsHeaderLen:], tc.want) {
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

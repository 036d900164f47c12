package dns

import (
	"bytes"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/qubes-netvm/qnet/internal/testsupport"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  []netip.Addr
	}{
		{"empty", "", nil},
		{"one", "nameserver 1.1.1.1\n", testsupport.Addrs("1.1.1.1")},
		{"order kept, duplicates kept", "nameserver 9.9.9.9\nnameserver 1.1.1.1\nnameserver 9.9.9.9\n", testsupport.Addrs("9.9.9.9", "1.1.1.1", "9.9.9.9")},
		{"no final newline", "nameserver 1.1.1.1", testsupport.Addrs("1.1.1.1")},
		{"tabs and indentation", "\t nameserver\t\t8.8.8.8  \n", testsupport.Addrs("8.8.8.8")},
		{"trailing field ignored like upstream", "nameserver 1.2.3.4 extra words\n", testsupport.Addrs("1.2.3.4")},
		{"trailing comment ignored like upstream", "nameserver 1.2.3.4 # home router\n", testsupport.Addrs("1.2.3.4")},
		{"hash comment", "# nameserver 1.2.3.4\n", nil},
		{"semicolon comment", "; nameserver 1.2.3.4\n", nil},
		{"glued punctuation and injection", "nameserver 1.2.3.4; flush ruleset\n", nil},
		{"injection after newline in value", "nameserver 1.2.3.4\"\nflush ruleset\n", nil},
		{"glued comment", "nameserver 1.2.3.4#x\n", nil},
		{"keyword case matters", "Nameserver 1.2.3.4\nNAMESERVER 1.2.3.4\n", nil},
		{"keyword prefix", "nameservers 1.2.3.4\nnameserver1.2.3.4\n", nil},
		{"no address", "nameserver\nnameserver   \n", nil},
		{"ipv6", "nameserver 2001:db8::1\nnameserver ::1\n", nil},
		{"ipv4-mapped ipv6", "nameserver ::ffff:1.2.3.4\n", nil},
		{"zone id ipv6", "nameserver fe80::1%eth0\n", nil},
		{"zone id ipv4", "nameserver 1.2.3.4%eth0\n", nil},
		{"leading zeros", "nameserver 01.2.3.4\nnameserver 1.2.3.004\n", nil},
		{"octet too big", "nameserver 1.2.3.256\n", nil},
		{"too few octets", "nameserver 1.2.3\nnameserver 16909060\n", nil},
		{"too many octets", "nameserver 1.2.3.4.5\n", nil},
		{"hex octets", "nameserver 0x1.2.3.4\n", nil},
		{"cidr", "nameserver 1.2.3.4/24\n", nil},
		{"port", "nameserver 1.2.3.4:53\n", nil},
		{"unicode digits", "nameserver １.2.3.4\n", nil},
		{"nul byte", "nameserver 1.2.3.4\x00\n", nil},
		{"garbage", "\x00\x01\x02\xff\n<<<>>>\n", nil},
		{"invalid utf-8 line skipped, others kept", "nameserver 1.1.1.1 \xff\nnameserver 2.2.2.2\n", testsupport.Addrs("2.2.2.2")},
		{"byte order mark", "\ufeffnameserver 1.1.1.1\n", nil},
		{"crlf", "nameserver 1.1.1.1\r\nnameserver 2.2.2.2\r\n", testsupport.Addrs("1.1.1.1", "2.2.2.2")},
		{"lone cr ends a line like python", "nameserver 1.1.1.1\rnameserver 2.2.2.2", testsupport.Addrs("1.1.1.1", "2.2.2.2")},
		{"python whitespace separators", "nameserver\x1c1.1.1.1\nnameserver\u00a02.2.2.2\nnameserver\u30003.3.3.3\n", testsupport.Addrs("1.1.1.1", "2.2.2.2", "3.3.3.3")},
		{"vertical tab and form feed", "\vnameserver\f4.4.4.4\n", testsupport.Addrs("4.4.4.4")},
		{"other options", "search example.org\noptions edns0 trust-ad\ndomain lan\n", nil},
		{"any ipv4 kept, as upstream", "nameserver 0.0.0.0\nnameserver 127.0.0.53\nnameserver 255.255.255.255\n", testsupport.Addrs("0.0.0.0", "127.0.0.53", "255.255.255.255")},
		{"overlong garbage line skipped, next line kept", strings.Repeat("A", 100000) + "\nnameserver 5.5.5.5\n", testsupport.Addrs("5.5.5.5")},
		{"overlong nameserver line skipped", "nameserver 6.6.6.6 " + strings.Repeat("x", MaxResolvConfLine) + "\nnameserver 7.7.7.7\n", testsupport.Addrs("7.7.7.7")},
		{"line of exactly MaxResolvConfLine kept", "nameserver 8.8.4.4 " + strings.Repeat("x", MaxResolvConfLine-len("nameserver 8.8.4.4 ")) + "\n", testsupport.Addrs("8.8.4.4")},
		{"overlong whitespace padding skipped", "nameserver" + strings.Repeat(" ", 2*MaxResolvConfLine) + "1.1.1.1\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ipv4Servers(strings.NewReader(tt.input))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Parse(%.60q) = %v, want %v", tt.input, got, tt.want)
			}
		})
	}
}

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	t.Run("missing file is no servers", func(t *testing.T) {
		got, err := ReadResolvConf(filepath.Join(dir, "absent"))
		if err != nil || got.IPv4 != nil || got.IPv6 != nil {
			t.Fatalf("ReadFile(absent) = %v, %v; want no servers, nil", got, err)
		}
	})
	t.Run("regular file", func(t *testing.T) {
		path := filepath.Join(dir, "resolv.conf")
		if err := os.WriteFile(path, []byte("nameserver 10.0.0.1\nnameserver 10.0.0.2\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := ReadResolvConf(path)
		if err != nil || !slices.Equal(got.IPv4, testsupport.Addrs("10.0.0.1", "10.0.0.2")) {
			t.Fatalf("ReadFile = %v, %v", got, err)
		}
	})
	t.Run("directory is an error", func(t *testing.T) {
		if _, err := ReadResolvConf(dir); err == nil || !strings.Contains(err.Error(), dir) {
			t.Fatalf("ReadFile(dir) error = %v, want one naming %s", err, dir)
		}
	})
}

// TestParseLineLengthsAtTheLimit covers lines around MaxResolvConfLine with each
// terminator, where the scanner's buffer is full.
func TestParseLineLengthsAtTheLimit(t *testing.T) {
	for n := MaxResolvConfLine - 2; n <= MaxResolvConfLine+3; n++ {
		for _, term := range []string{"\n", "\r", "\r\n"} {
			line := "nameserver 8.8.4.4 " + strings.Repeat("x", n-len("nameserver 8.8.4.4 "))
			got, err := ipv4Servers(strings.NewReader(line + term + "nameserver 1.1.1.1" + term))
			want := testsupport.Addrs("8.8.4.4", "1.1.1.1")
			if n > MaxResolvConfLine {
				want = testsupport.Addrs("1.1.1.1")
			}
			if err != nil || !slices.Equal(got, want) {
				t.Errorf("line of %d bytes ended by %q: ipv4Servers = %v, %v; want %v", n, term, got, err, want)
			}
		}
	}
}

func TestParseServers(t *testing.T) {
	input := "nameserver 2001:db8::53\nnameserver 10.0.0.1\nnameserver fe80::1%eth0\nnameserver fe80::2\n" +
		"nameserver 2001:db8::1%eth0\nnameserver ::ffff:1.2.3.4\nnameserver 2001:db8::54 # x\r\n#nameserver 2001:db8::55\n"
	got, err := ParseResolvConfServers(strings.NewReader(input))
	if err != nil {
		t.Fatal(err)
	}
	want := ResolvConfServers{
		IPv4:   testsupport.Addrs("10.0.0.1"),
		IPv6:   testsupport.Addrs("2001:db8::53", "2001:db8::54"),
		Scoped: testsupport.Addrs("fe80::1%eth0", "fe80::2", "2001:db8::1%eth0"),
	}
	if !slices.Equal(got.IPv4, want.IPv4) || !slices.Equal(got.IPv6, want.IPv6) || !slices.Equal(got.Scoped, want.Scoped) {
		t.Fatalf("ParseResolvConfServers = %+v, want %+v", got, want)
	}
}

// FuzzParse checks that no input panics and that every server returned
// comes from a line whose first field is "nameserver" and whose second field
// is the address's exact canonical text: nothing else can become a rule.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"nameserver 1.1.1.1\n",
		"nameserver 1.2.3.4; flush ruleset\n",
		"nameserver fe80::1%eth0\n",
		"# comment\nnameserver 9.9.9.9 x\r\nnameserver\t8.8.8.8",
		"nameserver\x1c1.1.1.1\rnameserver 01.1.1.1\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		got, err := ipv4Servers(bytes.NewReader(input))
		if err != nil {
			t.Fatalf("Parse failed on an in-memory reader: %v", err)
		}
		for _, addr := range got {
			if !addr.Is4() {
				t.Fatalf("non-IPv4 result %v", addr)
			}
			if !bytes.Contains(input, []byte(addr.String())) || !bytes.Contains(input, []byte("nameserver")) {
				t.Fatalf("result %v does not appear in the input", addr)
			}
		}
		if len(got) > bytes.Count(input, []byte("nameserver")) {
			t.Fatalf("%d servers from %d nameserver keywords", len(got), bytes.Count(input, []byte("nameserver")))
		}
	})
}

// ipv4Servers is the IPv4 part of what ParseResolvConfServers finds in r,
// the list upstream's script reads.
func ipv4Servers(r io.Reader) ([]netip.Addr, error) {
	servers, err := ParseResolvConfServers(r)
	return servers.IPv4, err
}

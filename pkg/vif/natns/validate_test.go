package natns_test

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/qubes-netvm/qnet/pkg/vif/natns"
)

func validSpec() natns.Spec {
	return natns.Spec{
		Vif:            "vif9.0",
		ClientMAC:      net.HardwareAddr{0x00, 0x16, 0x3e, 0x5e, 0x6c, 0x00},
		RealIP:         netip.MustParseAddr("10.137.0.5"),
		VisibleIP:      netip.MustParseAddr("10.138.7.7"),
		VisibleGateway: netip.MustParseAddr("10.138.7.1"),
		Gateway:        netip.MustParseAddr("10.137.0.1"),
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		edit    func(*natns.Spec)
		wantErr string // substring; empty: valid
	}{
		{"valid", func(*natns.Spec) {}, ""},
		{"longest vif name", func(s *natns.Spec) { s.Vif = "vif32752.1234" }, ""},
		{"any name the kernel takes", func(s *natns.Spec) { s.Vif = "work+net@1" }, ""},
		{"vif name too long for <vif>-p", func(s *natns.Spec) { s.Vif = "vif32752.12345" }, `"vif32752.12345"`},
		{"vif name with slash", func(s *natns.Spec) { s.Vif = "../x" }, `"../x"`},
		{"empty vif name", func(s *natns.Spec) { s.Vif = "" }, `bad interface name ""`},
		{"short MAC", func(s *natns.Spec) { s.ClientMAC = s.ClientMAC[:5] }, "00:16:3e:5e:6c"},
		{"visible IP is IPv6", func(s *natns.Spec) { s.VisibleIP = netip.MustParseAddr("fd09:24ef:4179::a8a:707") }, "visible IP \"fd09:24ef:4179::a8a:707\" is not an IPv4"},
		{"visible IP is IPv4-mapped IPv6", func(s *natns.Spec) { s.VisibleIP = netip.MustParseAddr("::ffff:10.138.7.7") }, "::ffff:10.138.7.7"},
		{"visible IP missing", func(s *natns.Spec) { s.VisibleIP = netip.Addr{} }, "visible IP \"invalid IP\""},
		{"real IP is IPv6", func(s *natns.Spec) { s.RealIP = netip.MustParseAddr("fd09::5") }, "real IP \"fd09::5\""},
		{"visible gateway missing", func(s *natns.Spec) { s.VisibleGateway = netip.Addr{} }, "visible gateway"},
		{"gateway is IPv6", func(s *natns.Spec) { s.Gateway = netip.MustParseAddr("fd09::1") }, "gateway \"fd09::1\""},
		{"visible equals real", func(s *natns.Spec) { s.VisibleIP = s.RealIP }, "visible IP 10.137.0.5 equals the real IP"},
		{"visible gateway equals visible IP", func(s *natns.Spec) { s.VisibleGateway = s.VisibleIP }, "visible gateway 10.138.7.7 equals the visible IP"},
		{"gateway equals real IP", func(s *natns.Spec) { s.Gateway = s.RealIP }, "gateway 10.137.0.5 equals the real IP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := validSpec()
			tc.edit(&s)
			err := s.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("Validate() = nil, want an error containing %q", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("Validate() = %q, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

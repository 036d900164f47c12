package sandbox_test

import (
	"regexp"
	"strconv"
	"testing"

	"github.com/qubes-netvm/qnet/internal/sandbox"
	"github.com/qubes-netvm/qnet/pkg/netvm"
)

// TestBaseRulesetNames checks that the base ruleset the sandbox loads uses
// the table name and interface groups the tools take from pkg/netvm: the
// ruleset file spells them as literals.
func TestBaseRulesetNames(t *testing.T) {
	tables := regexp.MustCompile(`(?m)^table (\S+) (\S+) \{`).FindAllStringSubmatch(sandbox.BaseRuleset, -1)
	if len(tables) != 2 {
		t.Fatalf("base ruleset has %d tables, want ip and ip6", len(tables))
	}
	for _, m := range tables {
		if m[2] != netvm.Table {
			t.Errorf("table %s %s, want %s %s", m[1], m[2], m[1], netvm.Table)
		}
	}
	for _, m := range regexp.MustCompile(`[io]ifgroup (\d+)`).FindAllStringSubmatch(sandbox.BaseRuleset, -1) {
		if m[1] != strconv.Itoa(netvm.ClientGroup) {
			t.Errorf("%q matches group %s, want only the client group %d", m[0], m[1], netvm.ClientGroup)
		}
	}
}

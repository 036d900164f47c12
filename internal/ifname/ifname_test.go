package ifname

import (
	"fmt"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, name := range []string{"vif12.0", "work-net", "a+b@c", "x", "abcdefghijklmno", "-lead", "..."} {
		if err := Check(name); err != nil {
			t.Errorf("Check(%q) = %v, want nil", name, err)
		}
	}
	for _, name := range []string{"", ".", "..", "abcdefghijklmnop", "a/b", "a:b", "a b", "a\tb", "\u00e9t\u00e9", "a\x7f"} {
		err := Check(name)
		if err == nil {
			t.Errorf("Check(%q) = nil, want an error", name)
		} else if want := fmt.Sprintf("bad interface name %q", name); !strings.Contains(err.Error(), want) {
			t.Errorf("Check(%q) = %q, want it to contain %s", name, err, want)
		}
	}
}

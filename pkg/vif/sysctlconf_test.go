package vif

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/qubes-netvm/qnet/internal/sysctl"
)

func TestParseConf(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []Assignment
		wantErr []string // each must appear in the error; nil means no error
	}{
		{
			name: "comments and blank lines",
			in:   "# comment\n; also a comment\n\n \t \n   # indented comment\n",
		},
		{
			name: "dotted key",
			in:   "net.ipv4.ip_forward = 1\n",
			want: []Assignment{{Key: "net/ipv4/ip_forward", Value: "1"}},
		},
		{
			name: "slash key keeps dots of interface names",
			in:   "net/ipv4/conf/vif3.0/proxy_arp=1",
			want: []Assignment{{Key: "net/ipv4/conf/vif3.0/proxy_arp", Value: "1"}},
		},
		{
			name: "leading and doubled slashes, dot components",
			in:   "/net//ipv4/./conf/eth0/rp_filter = 2\n",
			want: []Assignment{{Key: "net/ipv4/conf/eth0/rp_filter", Value: "2"}},
		},
		{
			name: "dotted key with a slash names a dotted interface",
			in:   "net.ipv4.conf.vif3/0.forwarding = 1\n",
			want: []Assignment{{Key: "net/ipv4/conf/vif3.0/forwarding", Value: "1"}},
		},
		{
			name: "whitespace, ignore-failure dash, inner spaces of value kept",
			in:   "  -  net.ipv4.conf.all.rp_filter \t =   1  2 \t\n",
			want: []Assignment{{Key: "net/ipv4/conf/all/rp_filter", Value: "1  2", IgnoreFailure: true}},
		},
		{
			name: "empty value and value holding '='",
			in:   "kernel.domainname =\nkernel.x = a=b\n",
			want: []Assignment{{Key: "kernel/domainname"}, {Key: "kernel/x", Value: "a=b"}},
		},
		{
			name: "glob key",
			in:   "net.ipv4.conf.*.accept_redirects = 0\n",
			want: []Assignment{{Key: "net/ipv4/conf/*/accept_redirects", Value: "0"}},
		},
		{
			name: "exclusion",
			in:   "-net.ipv4.conf.eth0.rp_filter\n",
			want: []Assignment{{Key: "net/ipv4/conf/eth0/rp_filter", Exclude: true}},
		},
		{
			name: "override with another value moves to the later position",
			in:   "a.b = 1\nc.d = 2\na/b = 3\n",
			want: []Assignment{{Key: "c/d", Value: "2"}, {Key: "a/b", Value: "3"}},
		},
		{
			name: "repeat with the same value stays and merges ignore-failure",
			in:   "a.b = 1\nc.d = 2\n-a.b = 1\n",
			want: []Assignment{{Key: "a/b", Value: "1", IgnoreFailure: true}, {Key: "c/d", Value: "2"}},
		},
		{
			name: "assignment overrides exclusion",
			in:   "-a.b\na.b = 1\n",
			want: []Assignment{{Key: "a/b", Value: "1"}},
		},
		{
			name:    "line without '=' is skipped and reported",
			in:      "a.b = 1\ngarbage here\nc.d = 2\n",
			want:    []Assignment{{Key: "a/b", Value: "1"}, {Key: "c/d", Value: "2"}},
			wantErr: []string{`t.conf:2: not an assignment: "garbage here"`},
		},
		{
			name:    "line ends: CRLF, CR, LF CR as one, NUL",
			in:      "a.b=1\r\nc.d=2\rbad1\n\re.f=3\x00bad2",
			want:    []Assignment{{Key: "a/b", Value: "1"}, {Key: "c/d", Value: "2"}, {Key: "e/f", Value: "3"}},
			wantErr: []string{`t.conf:3: not an assignment: "bad1"`, `t.conf:5: not an assignment: "bad2"`},
		},
		{
			name:    "key escaping /proc/sys",
			in:      "net/../../etc/x = 1\n",
			wantErr: []string{"t.conf:1: bad sysctl key"},
		},
		{
			name:    "empty key",
			in:      " . = 1\n= 2\n",
			wantErr: []string{"t.conf:1: empty sysctl key", "t.conf:2: empty sysctl key"},
		},
		{
			name:    "malformed glob",
			in:      "net.ipv4.conf.[a.x = 1\n",
			wantErr: []string{"t.conf:1: malformed glob"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseConf(strings.NewReader(tt.in), "t.conf")
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("assignments:\n got  %+v\n want %+v", got, tt.want)
			}
			if tt.wantErr == nil {
				if err != nil {
					t.Errorf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want one containing %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestParseConfOverlongLine(t *testing.T) {
	in := "a.b = 1\nc.d = " + strings.Repeat("x", maxLineLen) + "\n"
	got, err := ParseConf(strings.NewReader(in), "t.conf")
	if err == nil || !strings.Contains(err.Error(), "t.conf:2: line longer than") {
		t.Errorf("error = %v, want t.conf:2: line longer than ...", err)
	}
	if got != nil {
		t.Errorf("assignments = %+v, want none", got)
	}
}

// render writes assignments back in sysctl.d syntax. A leading '/' keeps
// keys in slash form and stops a key starting with '-', '#' or ';' from
// being read as a flag or a comment.
func render(as []Assignment) string {
	var b strings.Builder
	for _, a := range as {
		switch {
		case a.Exclude:
			fmt.Fprintf(&b, "-/%s\n", a.Key)
		case a.IgnoreFailure:
			fmt.Fprintf(&b, "-/%s = %s\n", a.Key, a.Value)
		default:
			fmt.Fprintf(&b, "/%s = %s\n", a.Key, a.Value)
		}
	}
	return b.String()
}

// FuzzParseConf checks that whatever ParseConf accepts is well formed
// (keys that cannot leave /proc/sys, each key once, stripped values) and
// survives a round trip through render.
func FuzzParseConf(f *testing.F) {
	f.Add([]byte(BuiltinHardening))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, _ := ParseConf(bytes.NewReader(data), "fuzz")
		seen := map[string]bool{}
		for _, a := range got {
			if err := sysctl.CheckKey(a.Key); err != nil {
				t.Fatalf("accepted bad key: %v", err)
			}
			if seen[a.Key] {
				t.Fatalf("key %q returned twice", a.Key)
			}
			seen[a.Key] = true
			if a.Value != strings.Trim(a.Value, whitespace) || strings.ContainsAny(a.Value, "\n\r\x00") {
				t.Fatalf("value %q not stripped to one line", a.Value)
			}
			if a.Exclude && (a.Value != "" || a.IgnoreFailure) {
				t.Fatalf("exclusion with value or flag: %+v", a)
			}
		}
		for _, a := range got {
			// systemd strips a key before normalizing it, so "x/ /" keeps a
			// trailing blank component that no rendered line can express.
			if strings.TrimRight(a.Key, whitespace) != a.Key {
				return
			}
		}
		again, err := ParseConf(strings.NewReader(render(got)), "rendered")
		if err != nil {
			t.Fatalf("re-parse of rendered assignments: %v\n%s", err, render(got))
		}
		if len(got) == 0 && len(again) == 0 {
			return
		}
		if !reflect.DeepEqual(again, got) {
			t.Fatalf("round trip changed assignments:\n got   %+v\n again %+v", got, again)
		}
	})
}

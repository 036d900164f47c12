package xenstore_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	fakexs "github.com/qubes-netvm/qnet/internal/fake/xenstore"
)

// TestRealClients drives the fake with Debian's xenstore-utils through
// XENSTORED_PATH, which proves the fake speaks the real protocol.
func TestRealClients(t *testing.T) {
	for _, tool := range []string{"xenstore-read", "xenstore-write", "xenstore-ls", "xenstore-rm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (Debian package xenstore-utils; make test installs it): %v", tool, err)
		}
	}
	lsGolden, err := os.ReadFile("testdata/ls-backend.golden")
	if err != nil {
		t.Fatal(err)
	}
	const vif = "/local/domain/0/backend/vif/5/0"

	tests := []struct {
		name       string
		args       []string
		wantExit   int
		wantStdout string
		// check inspects the store afterwards.
		check func(t *testing.T, s *fakexs.Server)
	}{
		{
			name:       "read found, relative path",
			args:       []string{"xenstore-read", "backend/vif/5/0/mac"},
			wantStdout: "00:16:3e:5e:6c:00\n",
		},
		{
			name:       "read found, absolute path",
			args:       []string{"xenstore-read", vif + "/ip"},
			wantStdout: "10.137.0.5 fd09:24ef:4179::a89:5\n",
		},
		{
			name:     "read missing",
			args:     []string{"xenstore-read", vif + "/vifname"},
			wantExit: 1,
		},
		{
			name: "write one pair",
			args: []string{"xenstore-write", vif + "/hotplug-status", "connected"},
			check: func(t *testing.T, s *fakexs.Server) {
				want := []fakexs.Write{{Path: vif + "/hotplug-status", Value: "connected"}}
				assertWrites(t, s, want)
			},
		},
		{
			name: "write two pairs commits one transaction",
			args: []string{"xenstore-write", "backend/vif/5/0/hotplug-error", "bad mac", "backend/vif/5/0/hotplug-status", "error"},
			check: func(t *testing.T, s *fakexs.Server) {
				w := s.Writes()
				if len(w) != 2 || w[0].Tx == 0 || w[0].Tx != w[1].Tx {
					t.Fatalf("writes %+v, want two in one transaction", w)
				}
				assertWrites(t, s, []fakexs.Write{
					{Path: vif + "/hotplug-error", Value: "bad mac", Tx: w[0].Tx},
					{Path: vif + "/hotplug-status", Value: "error", Tx: w[0].Tx},
				})
			},
		},
		{
			name:       "ls subtree",
			args:       []string{"xenstore-ls", "/local/domain/0/backend"},
			wantStdout: string(lsGolden),
		},
		{
			name: "rm subtree",
			args: []string{"xenstore-rm", "backend/vif/5"},
			check: func(t *testing.T, s *fakexs.Server) {
				if _, ok := s.Get(vif + "/mac"); ok {
					t.Error("mac still present after xenstore-rm of its grandparent")
				}
				if _, ok := s.Get("/local/domain/0/backend/vif"); !ok {
					t.Error("xenstore-rm removed the parent of what it was told to remove")
				}
				w := s.Writes()
				if len(w) != 1 || w[0].Path != "/local/domain/0/backend/vif/5" || !w[0].Rm {
					t.Errorf("writes %+v, want one rm of backend/vif/5", w)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			socket := filepath.Join(t.TempDir(), "xenstored.sock")
			s, err := fakexs.Start(socket, map[string]string{
				"backend/vif/5/0/mac":  "00:16:3e:5e:6c:00",
				"backend/vif/5/0/ip":   "10.137.0.5 fd09:24ef:4179::a89:5",
				"backend/vif/5/0/type": "vif",
				"backend/vif/7/0/note": `quote" back\ tab` + "\t",
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })

			cmd := exec.Command(tt.args[0], tt.args[1:]...)
			cmd.Env = []string{"XENSTORED_PATH=" + socket}
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err = cmd.Run()
			exit := 0
			if exitErr := (*exec.ExitError)(nil); errors.As(err, &exitErr) {
				exit = exitErr.ExitCode()
			} else if err != nil {
				t.Fatalf("run %v: %v", tt.args, err)
			}
			if exit != tt.wantExit {
				t.Fatalf("%v exited %d, want %d; stderr: %s", tt.args, exit, tt.wantExit, stderr.Bytes())
			}
			if tt.wantExit == 0 && stdout.String() != tt.wantStdout {
				t.Errorf("%v stdout:\n%s\nwant:\n%s", tt.args, stdout.Bytes(), tt.wantStdout)
			}
			if tt.check != nil {
				tt.check(t, s)
			}
		})
	}
}

func assertWrites(t *testing.T, s *fakexs.Server, want []fakexs.Write) {
	t.Helper()
	got := s.Writes()
	if len(got) != len(want) {
		t.Fatalf("writes %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("write %d is %+v, want %+v", i, got[i], want[i])
		}
	}
}

package testsupport

import (
	"path/filepath"
	"testing"

	fakeqdb "github.com/qubes-netvm/qnet/internal/fake/qubesdb"
	fakexs "github.com/qubes-netvm/qnet/internal/fake/xenstore"
)

// QubesDB starts a fake QubesDB daemon holding initial on a socket in a
// temporary directory, closed when the test ends; it returns the daemon
// and its socket path.
func QubesDB(t testing.TB, initial map[string]string) (*fakeqdb.Server, string) {
	t.Helper()
	socket := filepath.Join(t.TempDir(), "qubesdb.sock")
	srv, err := fakeqdb.Start(socket, initial)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close fake QubesDB: %v", err)
		}
	})
	return srv, socket
}

// XenStore starts a fake XenStore daemon holding initial on a socket in a
// temporary directory, closed when the test ends; it returns the daemon
// and its socket path.
func XenStore(t testing.TB, initial map[string]string, opts ...fakexs.Option) (*fakexs.Server, string) {
	t.Helper()
	socket := filepath.Join(t.TempDir(), "xenstored.sock")
	srv, err := fakexs.Start(socket, initial, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close fake XenStore: %v", err)
		}
	})
	return srv, socket
}

// Package nftverify confirms an nftables batch by reading its result back
// after Flush, because google/nftables v0.3.0 can report a failed batch as
// applied: when a message in the batch makes the kernel autoload a module,
// the kernel sends one extra acknowledgement, Flush counts acknowledgements
// per message, and the last message's error is never read
// (google/nftables issue #329).
package nftverify

import (
	"errors"
	"fmt"

	"github.com/google/nftables"
)

// ErrUnconfirmed marks a batch that Flush reported as applied but whose
// result the verification did not find.
var ErrUnconfirmed = errors.New("nftables batch reported as applied but its result is missing")

// Flush sends the batch queued on c and, if the kernel reported success,
// calls verify, which must read back from the kernel what the batch was
// meant to leave there and return an error if it is not there. The error
// of a failed verification wraps both ErrUnconfirmed and verify's error.
func Flush(c *nftables.Conn, verify func() error) error {
	if err := c.Flush(); err != nil {
		return err
	}
	if err := verify(); err != nil {
		return fmt.Errorf("%w: %w", ErrUnconfirmed, err)
	}
	return nil
}

package qubesdb

import (
	"net"
	"time"
)

// NewClientOnConn lets the external tests drive a client over any
// connection, such as one end of net.Pipe carrying a scripted reply.
func NewClientOnConn(conn net.Conn, socket string, timeout time.Duration) *Client {
	return newClient(conn, socket, timeout)
}

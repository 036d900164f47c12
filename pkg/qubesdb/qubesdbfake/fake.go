// Package qubesdbfake is a QubesDB daemon for tests and the demo sandbox: it
// serves an in-memory database over a Unix socket with the real daemon's
// wire protocol and its observable behaviour, plus switches to make paths
// fail or stall.
package qubesdbfake

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"

	"github.com/qubes-netvm/qnet/pkg/qubesdb"

	"github.com/qubes-netvm/qnet/internal/unixserver"
)

// Write is one database change made by a client, in the order applied. A
// directory remove ("/a/") is one Write with Rm set.
type Write struct {
	Path, Value string
	Rm          bool
}

// Server is a running fake daemon.
type Server struct {
	srv       *unixserver.Server
	done      chan struct{} // closed by Close; releases stalled requests
	closeDone sync.Once

	mu       sync.Mutex
	entries  map[string]string
	writes   []Write
	requests []qubesdb.Header
	failing  map[string]bool
	stalled  map[string]bool
	conns    map[*conn]bool
}

// conn is one client connection and the watches it registered.
type conn struct {
	nc      net.Conn
	wmu     sync.Mutex // keeps each message (or reply series) contiguous
	watches []string   // guarded by Server.mu
}

func (c *conn) send(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.nc.Write(b)
	return err
}

// Start listens on socketPath and serves initial (path -> value) until Close.
func Start(socketPath string, initial map[string]string) (*Server, error) {
	s := &Server{
		done:    make(chan struct{}),
		entries: make(map[string]string, len(initial)),
		failing: make(map[string]bool),
		stalled: make(map[string]bool),
		conns:   make(map[*conn]bool),
	}
	for p, v := range initial {
		s.entries[p] = v
	}
	srv, err := unixserver.Listen(socketPath, s.serve)
	if err != nil {
		return nil, fmt.Errorf("fake QubesDB: %w", err)
	}
	s.srv = srv
	return s, nil
}

// Close stops serving, closes every connection, releases stalled requests
// and removes the socket file.
func (s *Server) Close() error {
	s.closeDone.Do(func() { close(s.done) })
	if err := s.srv.Close(); err != nil {
		return fmt.Errorf("fake QubesDB: %w", err)
	}
	return nil
}

// Set stores value at path as the daemon's other side (dom0) would, and
// fires the matching watches. It is not recorded in Writes.
func (s *Server) Set(path, value string) {
	s.mu.Lock()
	s.entries[path] = value
	s.mu.Unlock()
	s.fire(path)
}

// Delete removes the entry at path, firing the matching watches if it
// existed. It is not recorded in Writes.
func (s *Server) Delete(path string) {
	s.mu.Lock()
	_, ok := s.entries[path]
	delete(s.entries, path)
	s.mu.Unlock()
	if ok {
		s.fire(path)
	}
}

// Get returns the value stored at path.
func (s *Server) Get(path string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.entries[path]
	return v, ok
}

// Writes returns every change applied for clients (writes and removes), in
// order.
func (s *Server) Writes() []Write {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.writes)
}

// Requests returns the header of every request received, in order, so a
// test can prove that a refused call sent nothing.
func (s *Server) Requests() []qubesdb.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// Fail makes every request naming exactly path answer RESP_ERROR.
func (s *Server) Fail(path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failing[path] = true
}

// Stall makes every request naming exactly path go unanswered, and its
// connection silent, until Close.
func (s *Server) Stall(path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stalled[path] = true
}

// serve handles one client's requests in order until it disconnects or a
// request makes the daemon drop it.
func (s *Server) serve(nc net.Conn) {
	c := &conn{nc: nc}
	s.mu.Lock()
	s.conns[c] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	var buf [qubesdb.HeaderSize]byte
	for {
		if _, err := io.ReadFull(c.nc, buf[:]); err != nil {
			return
		}
		h, err := qubesdb.UnmarshalHeader(buf[:])
		if err != nil || !s.handle(c, h) {
			return
		}
	}
}

// handle answers one request; false means disconnect the client, as the real
// daemon does after a READ carrying data or a failed insert.
func (s *Server) handle(c *conn, h qubesdb.Header) bool {
	s.mu.Lock()
	s.requests = append(s.requests, h)
	failing, stalled := s.failing[h.Path], s.stalled[h.Path]
	s.mu.Unlock()

	if h.DataLen >= qubesdb.MaxData || h.Type > qubesdb.CmdUnwatch || qubesdb.ValidatePath(h.Path) != nil {
		return s.refuse(c, h, h.DataLen)
	}
	if stalled {
		<-s.done
		return false
	}
	if failing {
		return s.refuse(c, h, h.DataLen)
	}
	switch h.Type {
	case qubesdb.CmdRead:
		if h.DataLen > 0 {
			return false
		}
		return s.read(c, h.Path)
	case qubesdb.CmdWrite:
		return s.write(c, h)
	case qubesdb.CmdMultiread:
		if h.DataLen > 0 {
			return s.refuse(c, h, h.DataLen)
		}
		return s.dump(c, qubesdb.RespMultiread, h.Path, true)
	case qubesdb.CmdList:
		if h.DataLen > 0 {
			return s.refuse(c, h, h.DataLen)
		}
		return s.dump(c, qubesdb.RespList, h.Path, false)
	case qubesdb.CmdRm:
		if h.DataLen > 0 {
			return s.refuse(c, h, h.DataLen)
		}
		return s.rm(c, h.Path)
	case qubesdb.CmdWatch:
		s.mu.Lock()
		c.watches = append(c.watches, h.Path)
		s.mu.Unlock()
		return s.answer(c, qubesdb.RespOK, h.Path)
	default: // CmdUnwatch
		s.mu.Lock()
		i := slices.Index(c.watches, h.Path)
		if i >= 0 {
			c.watches = slices.Delete(c.watches, i, i+1)
		}
		s.mu.Unlock()
		if i < 0 {
			return s.answer(c, qubesdb.RespErrorNoent, h.Path)
		}
		return s.answer(c, qubesdb.RespOK, h.Path)
	}
}

func (s *Server) read(c *conn, path string) bool {
	s.mu.Lock()
	value, ok := s.entries[path]
	s.mu.Unlock()
	if !ok {
		return s.answer(c, qubesdb.RespErrorNoent, path)
	}
	msg, err := qubesdb.MarshalHeader(qubesdb.Header{Type: qubesdb.RespRead, Path: path, DataLen: uint32(len(value))})
	if err != nil {
		return false
	}
	return c.send(append(msg, value...)) == nil
}

// write stores a client's value. Like the daemon: NUL in the value is
// refused and the client kept; a path that cannot be an entry (no leading
// '/', trailing '/') is refused and the client dropped.
func (s *Server) write(c *conn, h qubesdb.Header) bool {
	value := make([]byte, h.DataLen)
	if _, err := io.ReadFull(c.nc, value); err != nil {
		return false
	}
	if bytes.IndexByte(value, 0) >= 0 {
		return s.refuse(c, h, 0)
	}
	if !strings.HasPrefix(h.Path, "/") || strings.HasSuffix(h.Path, "/") {
		s.refuse(c, h, 0)
		return false
	}
	s.mu.Lock()
	s.entries[h.Path] = string(value)
	s.writes = append(s.writes, Write{Path: h.Path, Value: string(value)})
	s.mu.Unlock()
	if !s.answer(c, qubesdb.RespOK, h.Path) {
		return false
	}
	s.fire(h.Path)
	return true
}

// rm removes one entry, or a whole subtree when path ends with '/'.
func (s *Server) rm(c *conn, path string) bool {
	s.mu.Lock()
	removed := false
	for p := range s.entries {
		if p == path || (strings.HasSuffix(path, "/") && strings.HasPrefix(p, path)) {
			delete(s.entries, p)
			removed = true
		}
	}
	if removed {
		s.writes = append(s.writes, Write{Path: path, Rm: true})
	}
	s.mu.Unlock()
	if !removed {
		return s.answer(c, qubesdb.RespErrorNoent, path)
	}
	if !s.answer(c, qubesdb.RespOK, path) {
		return false
	}
	s.fire(path)
	return true
}

// dump answers LIST and MULTIREAD: the entries whose path starts with
// prefix, in sorted order (reversed for a whole-database MULTIREAD, as the
// daemon does), then the empty terminator header; one write, so no watch
// event lands inside an entry.
func (s *Server) dump(c *conn, resp qubesdb.MsgType, prefix string, withValues bool) bool {
	s.mu.Lock()
	var paths []string
	for p := range s.entries {
		if strings.HasPrefix(p, prefix) {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)
	if prefix == "" && resp == qubesdb.RespMultiread {
		slices.Reverse(paths)
	}
	var out []byte
	for _, p := range paths {
		value := ""
		if withValues {
			value = s.entries[p]
		}
		msg, err := qubesdb.MarshalHeader(qubesdb.Header{Type: resp, Path: p, DataLen: uint32(len(value))})
		if err != nil {
			s.mu.Unlock()
			return false
		}
		out = append(append(out, msg...), value...)
	}
	s.mu.Unlock()
	end, _ := qubesdb.MarshalHeader(qubesdb.Header{Type: resp})
	return c.send(append(out, end...)) == nil
}

// refuse discards the request's remaining data and answers RESP_ERROR.
func (s *Server) refuse(c *conn, h qubesdb.Header, unread uint32) bool {
	if _, err := io.CopyN(io.Discard, c.nc, int64(unread)); err != nil {
		return false
	}
	return s.answer(c, qubesdb.RespError, h.Path)
}

// answer sends a data-less reply echoing the request's path.
func (s *Server) answer(c *conn, resp qubesdb.MsgType, path string) bool {
	msg, err := qubesdb.MarshalHeader(qubesdb.Header{Type: resp, Path: path})
	if err != nil {
		return false
	}
	return c.send(msg) == nil
}

// fire sends RESP_WATCH for path to every matching watch: one event per
// registration, the watch path matching exactly or, when it ends with '/',
// as a prefix.
func (s *Server) fire(path string) {
	var targets []*conn
	s.mu.Lock()
	for c := range s.conns {
		for _, w := range c.watches {
			if w == path || (strings.HasSuffix(w, "/") && strings.HasPrefix(path, w)) {
				targets = append(targets, c)
			}
		}
	}
	s.mu.Unlock()
	msg, err := qubesdb.MarshalHeader(qubesdb.Header{Type: qubesdb.RespWatch, Path: path})
	if err != nil {
		return
	}
	for _, c := range targets {
		// A watcher that has gone away is dropped by its own serve loop.
		_ = c.send(msg)
	}
}

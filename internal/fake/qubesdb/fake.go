// Package qubesdb is a QubesDB daemon for tests: it serves an in-memory
// database over a Unix socket with the real daemon's wire protocol and its
// answers to READ, plus switches to make paths fail or stall. Every other
// command gets RESP_ERROR: nothing in this project sends one.
package qubesdb

import (
	"fmt"
	"io"
	"net"
	"slices"
	"sync"

	"github.com/qubes-netvm/qnet/internal/fake"
	"github.com/qubes-netvm/qnet/internal/wire/qdb"
)

// Server is a running fake daemon.
type Server struct {
	srv       *fake.Server
	done      chan struct{} // closed by Close; releases stalled requests
	closeDone sync.Once

	mu       sync.Mutex
	entries  map[string]string
	requests []qdb.Header
	failing  map[string]bool
	stalled  map[string]bool
}

// Start listens on socketPath and serves initial (path -> value) until Close.
func Start(socketPath string, initial map[string]string) (*Server, error) {
	s := &Server{
		done:    make(chan struct{}),
		entries: make(map[string]string, len(initial)),
		failing: make(map[string]bool),
		stalled: make(map[string]bool),
	}
	for p, v := range initial {
		s.entries[p] = v
	}
	srv, err := fake.Listen(socketPath, s.serve)
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

// Set stores value at path, as the daemon's other side (dom0) would.
func (s *Server) Set(path, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.entries[path] = value
}

// Delete removes the entry at path, as dom0 would.
func (s *Server) Delete(path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.entries, path)
}

// Requests returns the header of every request received, in order, so a
// test can prove that a refused call sent nothing.
func (s *Server) Requests() []qdb.Header {
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
	var buf [qdb.HeaderSize]byte
	for {
		if _, err := io.ReadFull(nc, buf[:]); err != nil {
			return
		}
		h, err := qdb.Unmarshal(buf[:])
		if err != nil || !s.handle(nc, h) {
			return
		}
	}
}

// handle answers one request; false means disconnect the client, as the real
// daemon does after a READ carrying data.
func (s *Server) handle(nc net.Conn, h qdb.Header) bool {
	s.mu.Lock()
	s.requests = append(s.requests, h)
	value, found := s.entries[h.Path]
	failing, stalled := s.failing[h.Path], s.stalled[h.Path]
	s.mu.Unlock()

	switch {
	case h.Type != qdb.CmdRead, h.DataLen >= qdb.MaxData, qdb.ValidatePath(h.Path) != nil:
		if _, err := io.CopyN(io.Discard, nc, int64(h.DataLen)); err != nil {
			return false
		}
		return answer(nc, qdb.Header{Type: qdb.RespError, Path: h.Path}, "")
	case h.DataLen > 0:
		return false
	case stalled:
		<-s.done
		return false
	case failing:
		return answer(nc, qdb.Header{Type: qdb.RespError, Path: h.Path}, "")
	case !found:
		return answer(nc, qdb.Header{Type: qdb.RespErrorNoent, Path: h.Path}, "")
	}
	return answer(nc, qdb.Header{Type: qdb.RespRead, Path: h.Path, DataLen: uint32(len(value))}, value)
}

// answer sends one reply, header and data in a single write.
func answer(nc net.Conn, h qdb.Header, data string) bool {
	msg, err := qdb.Marshal(h)
	if err != nil {
		return false
	}
	_, err = nc.Write(append(msg, data...))
	return err == nil
}

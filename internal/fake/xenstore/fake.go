// Package xenstore is an in-memory XenStore daemon on a Unix socket for
// tests. It speaks the real wire protocol, so this project's client and
// Debian's xenstore-* tools (through XENSTORED_PATH) can both use it, and it
// can be told to fail, stall or refuse commits.
package xenstore

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/qubes-netvm/qnet/internal/wire/xs"

	"github.com/qubes-netvm/qnet/internal/fake"
)

// DefaultHome is where relative paths resolve: the fake plays dom0, the
// backend domain of the vifs under test.
const DefaultHome = "/local/domain/0"

// Write is a change that reached the store, in commit order.
type Write struct {
	Path  string // absolute
	Value string // empty for Rm
	Rm    bool
	Tx    uint32 // transaction it was committed with, 0 for none
}

// Option configures a Server.
type Option func(*Server)

// WithHome makes relative paths resolve against home instead of
// DefaultHome, to play another domain (e.g. a driver domain).
func WithHome(home string) Option {
	return func(s *Server) { s.home = strings.TrimSuffix(home, "/") }
}

// Server is the fake daemon. Its methods are safe for concurrent use.
type Server struct {
	srv  *fake.Server
	home string

	mu            sync.Mutex
	nodes         tree
	writes        []Write
	failures      map[string]string
	stalls        map[string]bool
	commitFails   int
	commitErrName string
	lastTx        uint32
	txs           map[uint32]*transaction
}

// transaction works on its own copy of the tree, so it reads its own
// writes, and keeps the changes to replay at commit.
type transaction struct {
	owner   net.Conn
	nodes   tree
	changes []Write
}

// Start listens on socketPath and serves a store holding initial (paths
// relative to the home domain allowed; parents are created).
func Start(socketPath string, initial map[string]string, opts ...Option) (*Server, error) {
	s := &Server{
		home:     DefaultHome,
		nodes:    tree{"/": ""},
		failures: map[string]string{},
		stalls:   map[string]bool{},
		txs:      map[uint32]*transaction{},
	}
	for _, opt := range opts {
		opt(s)
	}
	for path, value := range initial {
		s.nodes.write(s.resolve(path), value)
	}
	srv, err := fake.Listen(socketPath, s.serve)
	if err != nil {
		return nil, fmt.Errorf("start fake xenstored: %w", err)
	}
	s.srv = srv
	return s, nil
}

// Close stops serving, drops every connection and waits for them to end.
func (s *Server) Close() error {
	if err := s.srv.Close(); err != nil {
		return fmt.Errorf("fake xenstored: %w", err)
	}
	return nil
}

// Set writes a node (and missing parents) without recording a Write.
func (s *Server) Set(path, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nodes.write(s.resolve(path), value)
}

// Delete removes a node and its subtree without recording a Write.
func (s *Server) Delete(path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nodes.remove(s.resolve(path))
}

// Get returns a node's value and whether it exists.
func (s *Server) Get(path string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	value, ok := s.nodes[s.resolve(path)]
	return value, ok
}

// Writes returns the committed changes so far, in order.
func (s *Server) Writes() []Write {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.writes)
}

// Fail makes every request on path answer ERROR errName.
func (s *Server) Fail(path, errName string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures[s.resolve(path)] = errName
}

// Stall makes every request on path go unanswered.
func (s *Server) Stall(path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stalls[s.resolve(path)] = true
}

// FailCommits makes the next n commits answer ERROR errName and discard
// their transaction, as xenstored does on a conflict with "EAGAIN".
func (s *Server) FailCommits(n int, errName string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.commitFails, s.commitErrName = n, errName
}

func (s *Server) resolve(path string) string {
	if strings.HasPrefix(path, "/") {
		return path
	}
	return s.home + "/" + path
}

// serve answers one connection's requests in order until it closes or
// sends something unframeable.
func (s *Server) serve(c net.Conn) {
	defer s.drop(c)
	for {
		req, payload, err := xs.ReadMsg(c)
		if err != nil {
			return
		}
		typ, body, answer := s.handle(c, req, payload)
		if !answer {
			continue
		}
		reply := xs.Header{Type: typ, ReqID: req.ReqID, TxID: req.TxID}
		if err := xs.WriteMsg(c, reply, body); err != nil {
			return
		}
	}
}

// drop forgets the transactions a closed connection left open.
func (s *Server) drop(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, tx := range s.txs {
		if tx.owner == c {
			delete(s.txs, id)
		}
	}
}

// errReply is an ERROR reply's payload.
func errReply(name string) (xs.Type, []byte, bool) {
	return xs.Error, append([]byte(name), 0), true
}

var okReply = []byte("OK\x00")

// handle computes the reply to one request; answer is false for a
// stalled one.
func (s *Server) handle(c net.Conn, req xs.Header, payload []byte) (typ xs.Type, body []byte, answer bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch req.Type {
	case xs.TransactionStart:
		s.lastTx++
		s.txs[s.lastTx] = &transaction{owner: c, nodes: s.nodes.clone()}
		return req.Type, append(strconv.AppendUint(nil, uint64(s.lastTx), 10), 0), true
	case xs.TransactionEnd:
		return s.endTransaction(c, req.TxID, string(payload))
	case xs.Read, xs.Write, xs.Directory, xs.Rm, xs.GetPerms:
		return s.nodeRequest(c, req, payload)
	default:
		return errReply("ENOSYS")
	}
}

func (s *Server) endTransaction(c net.Conn, id uint32, payload string) (xs.Type, []byte, bool) {
	tx, ok := s.txs[id]
	if !ok || tx.owner != c {
		return errReply("ENOENT")
	}
	switch payload {
	case "F\x00":
		delete(s.txs, id)
	case "T\x00":
		delete(s.txs, id)
		if s.commitFails > 0 {
			s.commitFails--
			return errReply(s.commitErrName)
		}
		for _, change := range tx.changes {
			s.apply(change)
		}
	default:
		return errReply("EINVAL")
	}
	return xs.TransactionEnd, okReply, true
}

func (s *Server) apply(change Write) {
	if change.Rm {
		s.nodes.remove(change.Path)
	} else {
		s.nodes.write(change.Path, change.Value)
	}
	s.writes = append(s.writes, change)
}

// nodeRequest answers the requests that name one node: "path\0", or
// "path\0value" for a write.
func (s *Server) nodeRequest(c net.Conn, req xs.Header, payload []byte) (xs.Type, []byte, bool) {
	rawPath, value, found := strings.Cut(string(payload), "\x00")
	if !found || (req.Type != xs.Write && value != "") {
		return errReply("EINVAL")
	}
	path := s.resolve(rawPath)
	if !validPath(path) {
		return errReply("EINVAL")
	}
	if s.stalls[path] {
		return 0, nil, false
	}
	if name, ok := s.failures[path]; ok {
		return errReply(name)
	}
	nodes, record := s.nodes, s.apply
	if req.TxID != 0 {
		tx, ok := s.txs[req.TxID]
		if !ok || tx.owner != c {
			return errReply("ENOENT")
		}
		nodes = tx.nodes
		record = func(change Write) {
			change.Tx = req.TxID
			tx.changes = append(tx.changes, change)
			if change.Rm {
				tx.nodes.remove(change.Path)
			} else {
				tx.nodes.write(change.Path, change.Value)
			}
		}
	}
	switch req.Type {
	case xs.Write:
		record(Write{Path: path, Value: value})
		return req.Type, okReply, true
	case xs.Rm:
		if path == "/" {
			return errReply("EINVAL")
		}
		if _, ok := nodes[path]; ok {
			record(Write{Path: path, Rm: true})
			return req.Type, okReply, true
		}
		// Like xenstored: removing an absent child of an existing node succeeds.
		if _, ok := nodes[parent(path)]; ok {
			return req.Type, okReply, true
		}
		return errReply("ENOENT")
	}
	value, ok := nodes[path]
	if !ok {
		return errReply("ENOENT")
	}
	switch req.Type {
	case xs.Read:
		return req.Type, []byte(value), true
	case xs.Directory:
		var body []byte
		for _, name := range nodes.children(path) {
			body = append(append(body, name...), 0)
		}
		return req.Type, body, true
	default: // GetPerms: owned by dom0, no access for others.
		return req.Type, []byte("n0\x00"), true
	}
}

// validPath applies xenstored's rules to an absolute path: "/" or
// non-empty components of [A-Za-z0-9_@-] separated by single slashes.
func validPath(path string) bool {
	if path == "/" {
		return true
	}
	for _, component := range strings.Split(path, "/")[1:] {
		if component == "" || strings.ContainsFunc(component, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_@", r))
		}) {
			return false
		}
	}
	return true
}

func parent(path string) string {
	i := strings.LastIndexByte(path, '/')
	if i <= 0 {
		return "/"
	}
	return path[:i]
}

// tree maps every node's absolute path to its value; a node's ancestors
// are always present.
type tree map[string]string

func (t tree) clone() tree {
	c := make(tree, len(t))
	for path, value := range t {
		c[path] = value
	}
	return c
}

func (t tree) write(path, value string) {
	t[path] = value
	for p := parent(path); ; p = parent(p) {
		if _, ok := t[p]; ok {
			return
		}
		t[p] = ""
	}
}

func (t tree) remove(path string) {
	prefix := strings.TrimSuffix(path, "/") + "/"
	for p := range t {
		if p != "/" && (p == path || strings.HasPrefix(p, prefix)) {
			delete(t, p)
		}
	}
}

// children returns the names of path's children, sorted.
func (t tree) children(path string) []string {
	prefix := strings.TrimSuffix(path, "/") + "/"
	var names []string
	for p := range t {
		if rest, ok := strings.CutPrefix(p, prefix); ok && rest != "" && !strings.Contains(rest, "/") {
			names = append(names, rest)
		}
	}
	slices.Sort(names)
	return names
}

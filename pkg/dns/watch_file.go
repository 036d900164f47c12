package dns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/unix"
)

// dirEvents are the directory events that can change what a name in it
// resolves to or contains: files written, created, deleted, renamed in or
// out (NetworkManager and resolvconf write a temporary file and rename it
// over the old one), symlinks replaced; and the directory itself going away.
const dirEvents = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO |
	unix.IN_CLOSE_WRITE | unix.IN_MODIFY | unix.IN_ATTRIB |
	unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR

// maxSymlinks bounds how far a symlink chain is followed, as the kernel's
// own limit on path resolution does.
const maxSymlinks = 40

// fileWatcher reports changes to a file through every symlink leading to
// it. It watches directories, not files, so the watch survives the file
// being replaced, and after any relevant event it re-resolves the chain of
// symlinks and re-targets its watches: when /etc/resolv.conf is switched
// from one target to another, the new target's directory is watched from
// then on.
type fileWatcher struct {
	path string
	log  *slog.Logger
	fd   int
	file *os.File         // the inotify descriptor, read through the runtime poller
	wds  map[int32]string // watch descriptor -> watched directory
	// names maps each watched directory to the entries in it that lie on
	// the path or its symlink chain.
	names map[string]map[string]bool
}

func newFileWatcher(path string, log *slog.Logger) (*fileWatcher, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", path, err)
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("watch %s: inotify_init1: %w", path, err)
	}
	w := &fileWatcher{path: abs, log: log, fd: fd, file: os.NewFile(uintptr(fd), "inotify")}
	if err := w.retarget(); err != nil {
		w.file.Close()
		return nil, err
	}
	return w, nil
}

// watchPoints returns, for path and each symlink it leads through, the
// deepest existing directory on the way and the entry in it to watch. A
// missing directory is covered by watching its nearest existing ancestor
// for the missing component.
func watchPoints(path string) map[string]map[string]bool {
	points := map[string]map[string]bool{}
	add := func(dir, name string) {
		if points[dir] == nil {
			points[dir] = map[string]bool{}
		}
		points[dir][name] = true
	}
	p := filepath.Clean(path)
	for range maxSymlinks {
		dir, name := filepath.Dir(p), filepath.Base(p)
		for {
			if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
				break
			}
			if parent := filepath.Dir(dir); parent != dir {
				dir, name = parent, filepath.Base(dir)
				continue
			}
			break
		}
		add(dir, name)
		if dir != filepath.Dir(p) {
			return points // the rest of the path does not exist yet
		}
		target, err := os.Readlink(p)
		if err != nil {
			return points // not a symlink (or gone): the end of the chain
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(dir, target)
		}
		p = filepath.Clean(target)
	}
	return points
}

// retarget points the watches at the current symlink chain. A directory
// on the way can appear between looking and watching (mkdir -p of the
// target's directories): its creation then raised no event, so the chain
// is looked at again once the watches are in place, until it stands still.
// Watches no longer needed are removed; the kernel's IN_IGNORED for them
// then names a descriptor no longer in wds and is not taken for a change.
func (w *fileWatcher) retarget() error {
	names := watchPoints(w.path)
	added := map[int32]string{}
	for range maxSymlinks {
		for dir := range names {
			wd, err := unix.InotifyAddWatch(w.fd, dir, dirEvents)
			if errors.Is(err, unix.ENOENT) {
				continue // gone again: the second look below sees it
			}
			if err != nil {
				return fmt.Errorf("watch %s: inotify_add_watch %s: %w", w.path, dir, err)
			}
			added[int32(wd)] = dir
		}
		again := watchPoints(w.path)
		if maps.EqualFunc(names, again, maps.Equal) {
			break
		}
		names = again
	}
	wds := map[int32]string{}
	for wd, dir := range added {
		if names[dir] != nil {
			wds[wd] = dir
		}
	}
	for _, old := range []map[int32]string{w.wds, added} {
		for wd := range old {
			if _, keep := wds[wd]; !keep {
				_, _ = unix.InotifyRmWatch(w.fd, uint32(wd)) // fails only for a watch the kernel already dropped
			}
		}
	}
	w.wds, w.names = wds, names
	w.log.Debug("watching resolv.conf", "path", w.path, "directories", names)
	return nil
}

// run reads events until ctx ends, calling poke for each batch that
// concerns the file.
func (w *fileWatcher) run(ctx context.Context, poke func(string)) {
	go func() {
		<-ctx.Done()
		w.file.Close() // unblocks Read
	}()
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	for {
		n, err := w.file.Read(buf)
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				w.log.Error("resolv.conf watch stopped", "error", err)
			}
			return
		}
		if !w.relevant(buf[:n]) {
			continue
		}
		// Re-aim the watches before asking for a sync: whatever changes
		// between the event and the new watches is then read by that sync,
		// and whatever changes after it raises a new event.
		if err := w.retarget(); err != nil {
			w.log.Error("cannot re-watch resolv.conf", "error", err)
		}
		poke("resolv.conf changed")
	}
}

// relevant reports whether any event in buf touches the watched chain.
func (w *fileWatcher) relevant(buf []byte) bool {
	found := false
	for off := 0; off+unix.SizeofInotifyEvent <= len(buf); {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
		nameBytes := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
		off += unix.SizeofInotifyEvent + int(ev.Len)
		dir, current := w.wds[ev.Wd]
		switch {
		case ev.Mask&unix.IN_Q_OVERFLOW != 0:
			found = true // events were lost
		case !current:
			// an event for a watch retarget just removed
		case ev.Mask&(unix.IN_IGNORED|unix.IN_DELETE_SELF|unix.IN_MOVE_SELF) != 0:
			found = true // a watched directory went away
		default:
			name, _, _ := bytes.Cut(nameBytes, []byte{0})
			found = found || w.names[dir][string(name)]
		}
	}
	return found
}

// The watch service: Sync at start and again whenever the DNS may have
// changed, however the change shows (systemd-resolved's signals,
// resolv.conf being rewritten, renamed or re-linked, addresses and routes
// changing), bursts of events coalesced into one run.

package dns

import (
	"context"
	"log/slog"
	"time"

	"github.com/vishvananda/netns"
)

// Defaults for WatchOptions.
const (
	DefaultCoalesce = 200 * time.Millisecond
	// UpdatesProxyUnit is restarted after a change, as the dispatcher hook
	// does: its resolver only reads the DNS servers when it starts.
	UpdatesProxyUnit = "qubes-updates-proxy.service"
	maxBackoff       = time.Minute
)

// WatchOptions configure Watch.
type WatchOptions struct {
	Sync Config
	// Coalesce is how long Watch waits after the first event of a burst
	// before it syncs; later events of the burst join that sync.
	Coalesce time.Duration
	// NetNS selects the network namespace whose address and route events
	// are watched; nil means the caller's.
	NetNS *netns.NsHandle
	// Synced, when set, is called after every sync with its result.
	Synced func(Result, error)
}

// Watch syncs, then watches and re-syncs until ctx ends. A failed sync is
// retried with a growing delay (1 s up to a minute) as well as on the next
// event. Between events Watch uses no CPU: it holds no periodic timer, only
// blocking reads, unless a sync failed or the system bus is missing.
func Watch(ctx context.Context, opts WatchOptions) error {
	if opts.Coalesce <= 0 {
		opts.Coalesce = DefaultCoalesce
	}
	log := opts.Sync.Logger
	events := make(chan string, 1)
	poke := func(reason string) {
		select {
		case events <- reason:
		default: // a sync is already pending; it will see this change too
		}
	}
	watchCtx, stopWatching := context.WithCancel(ctx)
	defer stopWatching()
	fileWatcher, err := newFileWatcher(opts.Sync.ResolvConf, log)
	if err != nil {
		return err
	}
	go fileWatcher.run(watchCtx, poke)
	go watchNetlink(watchCtx, opts.NetNS, log, poke)
	go watchResolved(watchCtx, opts.Sync, poke)

	var retry *time.Timer
	var retryC <-chan time.Time
	backoff := time.Second
	reason := "start"
	for {
		log.Debug("syncing DNS DNAT rules", "reason", reason)
		res, err := Sync(ctx, opts.Sync)
		if opts.Synced != nil {
			opts.Synced(res, err)
		}
		if err != nil {
			log.Error("DNS DNAT sync failed", "error", err, "retry_in", backoff)
			retry = time.NewTimer(backoff)
			retryC = retry.C
			backoff = min(2*backoff, maxBackoff)
		} else {
			if res.Changed {
				LogReplaced(log, res)
			}
			backoff = time.Second
		}
		select {
		case <-ctx.Done():
			return nil
		case reason = <-events:
			if err := coalesce(ctx, opts.Coalesce, events); err != nil {
				return nil
			}
		case <-retryC:
			reason = "retry"
		}
		if retry != nil {
			retry.Stop()
			retry, retryC = nil, nil
		}
	}
}

// LogReplaced logs a sync that replaced the chains, with what they now
// point at (the IPv6 part only when there are IPv6 virtual addresses).
func LogReplaced(log *slog.Logger, res Result) {
	args := []any{"servers", res.Real, "source", res.Source, "virtual", res.Virtual}
	if len(res.Virtual6) > 0 {
		args = append(args, "servers6", res.Real6, "virtual6", res.Virtual6)
	}
	log.Info("DNS DNAT rules replaced", args...)
}

// coalesce waits d so that the rest of a burst of events is absorbed by the
// coming sync; events arriving during the sync start another round.
func coalesce(ctx context.Context, d time.Duration, events <-chan string) error {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-events:
		case <-t.C:
			return nil
		}
	}
}

// sleep waits d or until ctx ends, reporting whether the full time passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

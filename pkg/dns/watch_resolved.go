package dns

import (
	"context"
	"time"
)

// watchResolved pokes on resolved's DNS change signals, and once each time
// it has subscribed (signals before that went unseen). When the bus
// connection fails or drops (the bus restarted, or there is none) it
// reconnects with a growing delay.
func watchResolved(ctx context.Context, cfg Config, poke func(string)) {
	backoff := time.Second
	for ctx.Err() == nil {
		conn, err := ConnectSystemBus(ctx, cfg.BusTimeout)
		if err == nil {
			backoff = time.Second
			err = WatchResolved(ctx, conn, func() { poke("systemd-resolved DNS changed") })
			conn.Close()
		}
		if ctx.Err() != nil {
			return
		}
		cfg.Logger.Debug("not watching systemd-resolved", "error", err, "retry_in", backoff)
		if !sleep(ctx, backoff) {
			return
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

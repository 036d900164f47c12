package main_test

import (
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qubes-netvm/qnet/internal/sandbox"
	"github.com/qubes-netvm/qnet/internal/testsupport"
)

// BenchmarkHotplug measures the whole process, run exactly as Xen runs it,
// for an IPv4 client: online, offline and the online+offline cycle, with
// 0, 100 and 1000 other vifs online in the same netvm. The binary is
// started from a thread inside the netvm namespace (no `ip netns exec` in
// the measurement). Run with -benchtime=30x or more; it reports the median
// and the 90th percentile in milliseconds and the peak RSS of the process.
func BenchmarkHotplug(b *testing.B) {
	for _, others := range []int{0, 100, 1000} {
		b.Run(fmt.Sprintf("others=%d", others), func(b *testing.B) {
			r := newRig(b, sandbox.Options{})
			r.populate(others)
			r.client(sandbox.ClientSpec{Domid: 42, IPv4: "10.137.0.42"}, "10.137.0.42")
			runs := max(b.N, 30)
			var online, offline, cycle []time.Duration
			var peakRSS int64
			run := func(cmd string) time.Duration {
				c := r.direct("vif42.0", 42, 0, nil, cmd)
				var took time.Duration
				err := r.sb.NetVM.Do(func() error {
					start := time.Now()
					out, err := c.CombinedOutput()
					took = time.Since(start)
					if err != nil {
						return fmt.Errorf("%s: %w\n%s", cmd, err, out)
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
				if ru, ok := c.ProcessState.SysUsage().(*syscall.Rusage); ok && ru.Maxrss > peakRSS {
					peakRSS = ru.Maxrss
				}
				return took
			}
			b.ResetTimer()
			for range runs {
				on := run("online")
				off := run("offline")
				online, offline, cycle = append(online, on), append(offline, off), append(cycle, on+off)
			}
			b.StopTimer()
			testsupport.ReportPercentiles(b, "online", online)
			testsupport.ReportPercentiles(b, "offline", offline)
			testsupport.ReportPercentiles(b, "cycle", cycle)
			b.ReportMetric(float64(peakRSS)/1024, "peak-rss-MiB")
		})
	}
}

// populate brings n other vifs online in the netvm (veth pairs whose peers
// stay in the netvm), as a busy network qube would have.
func (r *rig) populate(n int) {
	r.t.Helper()
	if n == 0 {
		return
	}
	var batch strings.Builder
	for i := range n {
		fmt.Fprintf(&batch, "link add vif%d.0 type veth peer name peer%d\n", 1000+i, i)
	}
	cmd := exec.Command("ip", "-n", r.sb.NetVM.Name, "-batch", "-")
	cmd.Stdin = strings.NewReader(batch.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		r.t.Fatalf("create %d vifs: %v\n%s", n, err, out)
	}
	for i := range n {
		domid := 1000 + i
		p := xenbusPath(domid, 0)
		r.xs.Set(p+"/ip", fmt.Sprintf("10.140.%d.%d", i/250, i%250+1))
		r.xs.Set(p+"/mac", "00:16:3e:5e:6c:01")
		r.xs.Set(p+"/type", "vif")
	}
	// Bring them online a few at a time.
	sem := make(chan struct{}, 4)
	errs := make(chan string, n)
	for i := range n {
		sem <- struct{}{}
		go func(domid int) {
			defer func() { <-sem }()
			if res := r.hotplug(fmt.Sprintf("vif%d.0", domid), domid, 0, nil, "online"); res.code != 0 {
				errs <- res.stderr
			}
		}(1000 + i)
	}
	for range cap(sem) {
		sem <- struct{}{}
	}
	close(errs)
	for e := range errs {
		r.t.Fatalf("populate: %s", e)
	}
}

package main_test

import (
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/qubes-netvm/qnet/internal/nfnl"
	"github.com/qubes-netvm/qnet/internal/sandbox"
	"github.com/qubes-netvm/qnet/internal/testsupport"
)

// BenchmarkHotplug measures the whole process, run exactly as Xen runs it,
// for an IPv4 client: online, offline and the online+offline cycle, with
// 0, 100 and 1000 other vifs online in the same netvm, and with 20,000
// unrelated conntrack entries (real UDP flows from the netvm). The binary
// is started from a thread inside the netvm namespace (no `ip netns exec`
// in the measurement). Beside them it reports the floors a run is
// compared against: the same run's --dry-run (inputs gathered and planned,
// no kernel change) and the RCU grace period (an nftables batch whose last
// operation is an element delete, against one that adds). Run with
// -benchtime=30x or more; it reports the median and the 90th percentile in
// milliseconds and the peak RSS of the process.
func BenchmarkHotplug(b *testing.B) {
	for _, tc := range []struct {
		others, flows int
	}{{0, 0}, {0, 20000}, {100, 0}, {1000, 0}} {
		b.Run(fmt.Sprintf("others=%d/conntrack=%d", tc.others, tc.flows), func(b *testing.B) {
			r := newRig(b, sandbox.Options{})
			r.populate(tc.others)
			r.fillConntrack(tc.flows)
			r.client(sandbox.ClientSpec{Domid: 42, IPv4: "10.137.0.42"}, "10.137.0.42")
			runs := max(b.N, 30)
			var online, offline, cycle, dry []time.Duration
			var peakRSS int64
			run := func(args ...string) time.Duration {
				c := r.direct("vif42.0", 42, 0, nil, args...)
				var took time.Duration
				err := r.sb.NetVM.Do(func() error {
					start := time.Now()
					out, err := c.CombinedOutput()
					took = time.Since(start)
					if err != nil {
						return fmt.Errorf("%v: %w\n%s", args, err, out)
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
				dry = append(dry, run("--dry-run", "online"))
				on := run("online")
				off := run("offline")
				online, offline, cycle = append(online, on), append(offline, off), append(cycle, on+off)
			}
			b.StopTimer()
			if tc.flows > 0 {
				if n := r.conntrackCount(); n < tc.flows {
					b.Fatalf("only %d conntrack entries left of %d: they expired during the runs", n, tc.flows)
				}
			}
			testsupport.ReportPercentiles(b, "online", online)
			testsupport.ReportPercentiles(b, "offline", offline)
			testsupport.ReportPercentiles(b, "cycle", cycle)
			testsupport.ReportPercentiles(b, "dry-run", dry)
			b.ReportMetric(float64(peakRSS)/1024, "peak-rss-MiB")
		})
	}
}

// BenchmarkGracePeriod measures the floor offline cannot go below: an
// nftables batch (on its own socket, closed after) whose last operation
// deletes a set element, against the same batch adding it. The difference
// is the RCU grace period the kernel waits for after a deletion.
func BenchmarkGracePeriod(b *testing.B) {
	r := newRig(b, sandbox.Options{})
	if out, err := r.sb.NetVM.Exec("nft", "add table ip qnt-grace; add set ip qnt-grace s { type ipv4_addr; }"); err != nil {
		b.Fatalf("nft: %v\n%s", err, out)
	}
	runs := max(b.N, 30)
	elem := func(op string) time.Duration {
		var took time.Duration
		err := r.sb.NetVM.Do(func() error {
			msgs, err := nfnl.Queued(func(c *nftables.Conn) error {
				set := &nftables.Set{Table: &nftables.Table{Name: "qnt-grace", Family: nftables.TableFamilyIPv4}, Name: "s", KeyType: nftables.TypeIPAddr}
				e := []nftables.SetElement{{Key: []byte{192, 0, 2, 1}}}
				if op == "add" {
					return c.SetAddElements(set, e)
				}
				return c.SetDeleteElements(set, e)
			})
			if err != nil {
				return err
			}
			start := time.Now()
			c, err := nfnl.Dial(0)
			if err != nil {
				return err
			}
			err = c.Batch(msgs)
			c.Close()
			took = time.Since(start)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		return took
	}
	var add, del []time.Duration
	b.ResetTimer()
	for range runs {
		add = append(add, elem("add"))
		del = append(del, elem("delete"))
	}
	b.StopTimer()
	testsupport.ReportPercentiles(b, "element-add", add)
	testsupport.ReportPercentiles(b, "element-delete", del)
}

// fillConntrack makes n unrelated conntrack entries in the netvm with
// real flows: one UDP datagram from the netvm to each of n ports of the
// internet host. The UDP timeout is raised in the netvm's namespace so
// that they outlive the benchmark.
func (r *rig) fillConntrack(n int) {
	r.t.Helper()
	if n == 0 {
		return
	}
	if err := r.sb.NetVM.SetSysctl("net/netfilter/nf_conntrack_udp_timeout", "3600"); err != nil {
		r.t.Fatal(err)
	}
	err := r.sb.NetVM.Do(func() error {
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(sandbox.UplinkAddr)})
		if err != nil {
			return err
		}
		defer conn.Close()
		for i := range n { // n <= 55535: one port each
			dst := &net.UDPAddr{IP: net.ParseIP(sandbox.InternetHost), Port: 10000 + i}
			if _, err := conn.WriteToUDP([]byte{0}, dst); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		r.t.Fatalf("make %d flows: %v", n, err)
	}
	testsupport.WaitFor(r.t, fmt.Sprintf("%d conntrack entries", n), func() bool { return r.conntrackCount() >= n })
}

func (r *rig) conntrackCount() int {
	v, err := r.sb.NetVM.Sysctl("net/netfilter/nf_conntrack_count")
	if err != nil {
		r.t.Fatal(err)
	}
	n, _ := strconv.Atoi(v)
	return n
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

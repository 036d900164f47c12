package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qubes-netvm/qnet/internal/testsupport"
)

// runInNetVM runs the binary as a child process that starts inside the
// network qube's namespace (forked from a thread switched into it), so the
// timing covers exactly one process, without ip netns exec around it.
func (e *env) runInNetVM(b *testing.B) (time.Duration, int) {
	b.Helper()
	var took time.Duration
	var code int
	err := e.sb.NetVM.Do(func() error {
		cmd := exec.Command(binary, "--resolv-conf", e.resolvConf, "--qubes-firewall-flag", e.flag)
		cmd.Env = append(os.Environ(), e.vars...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		start := time.Now()
		err := cmd.Run()
		took = time.Since(start)
		code = cmd.ProcessState.ExitCode()
		if code != 0 && code != 100 {
			return fmt.Errorf("exit %d (%v): %s", code, err, stderr.String())
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return took, code
}

// BenchmarkProcessUnchanged times whole-process runs that find the chain
// already right (exit 100); no system bus, so DNS comes from resolv.conf.
// Run with -benchtime=50x: the median and 90th percentile are reported.
func BenchmarkProcessUnchanged(b *testing.B) {
	e := newEnv(b, "nameserver 198.51.100.53\n")
	if _, code := e.runInNetVM(b); code != 0 {
		b.Fatalf("first run exit %d", code)
	}
	var runs []time.Duration
	for b.Loop() {
		took, code := e.runInNetVM(b)
		if code != 100 {
			b.Fatalf("exit %d, want 100", code)
		}
		runs = append(runs, took)
	}
	testsupport.ReportPercentiles(b, "unchanged", runs)
}

// BenchmarkProcessChanged times whole-process runs that replace the chain
// (exit 0): resolv.conf alternates between two servers.
func BenchmarkProcessChanged(b *testing.B) {
	e := newEnv(b, "")
	confs := []string{"nameserver 198.51.100.53\n", "nameserver 198.51.100.54\n"}
	var runs []time.Duration
	i := 0
	for b.Loop() {
		e.writeResolvConf(b, confs[i%2])
		i++
		took, code := e.runInNetVM(b)
		if code != 0 {
			b.Fatalf("exit %d, want 0", code)
		}
		runs = append(runs, took)
	}
	testsupport.ReportPercentiles(b, "changed", runs)
}

// BenchmarkWatchIdle starts the watch service, lets it settle, then
// reports the CPU time it uses over 5 idle seconds and its resident memory.
func BenchmarkWatchIdle(b *testing.B) {
	e := newEnv(b, "nameserver 198.51.100.53\n")
	cmd := e.command("--watch")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	}()
	deadline := time.Now().Add(10 * time.Second)
	for len(chainRulesB(e)) == 0 {
		if time.Now().After(deadline) {
			b.Fatal("watch never installed the rules")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(time.Second) // let the start-up syncs finish: this measures idleness, not a condition
	pid := cmd.Process.Pid
	for b.Loop() {
		before := cpuTicks(b, pid)
		time.Sleep(5 * time.Second)
		b.ReportMetric(float64(cpuTicks(b, pid)-before)*10, "idle-cpu-ms/5s")
	}
	b.ReportMetric(float64(rssKiB(b, pid))/1024, "rss-MiB")
}

func chainRulesB(e *env) string {
	out, _ := e.sb.NetVM.Exec("nft", "list", "chain", "ip", "qubes", "dnat-dns")
	if !strings.Contains(string(out), "dnat to") {
		return ""
	}
	return string(out)
}

// cpuTicks returns the process's user+system time in clock ticks (USER_HZ,
// 100 per second on Linux).
func cpuTicks(b *testing.B, pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+2:]))
	utime, _ := strconv.Atoi(fields[11])
	stime, _ := strconv.Atoi(fields[12])
	return utime + stime
}

func rssKiB(b *testing.B, pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kib, _ := strconv.Atoi(strings.Fields(rest)[0])
			return kib
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

package vif

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// KernelConfig is where FlowtableSupported looks: the running kernel's sysfs module
// directory, its build configuration and its module tree. Tests point it
// at files of their own.
type KernelConfig struct {
	SysModule string   // /sys/module
	Configs   []string // /proc/config.gz, /boot/config-<release>
	Modules   string   // /lib/modules/<release>
}

// RunningKernelConfig is the KernelConfig of the running system.
func RunningKernelConfig() KernelConfig {
	release := ""
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		release = string(bytes.TrimSpace(b))
	}
	return KernelConfig{
		SysModule: "/sys/module",
		Configs:   []string{"/proc/config.gz", "/boot/config-" + release},
		Modules:   "/lib/modules/" + release,
	}
}

// ErrNoFlowtable says the kernel cannot create an inet flowtable.
var ErrNoFlowtable = errors.New("the kernel has no inet flowtable support (CONFIG_NF_FLOW_TABLE_INET)")

// FlowtableSupported reports, without asking nf_tables, whether the kernel can
// create the flowtable: a batch with a flowtable the kernel cannot make
// is aborted, and an abort waits for an RCU grace period. The module
// loaded, or the configuration saying built in, means yes; the
// configuration saying not set, or module without a module file, means
// no. With nothing to read (no configuration is readable) it answers yes
// and lets the kernel decide.
func (k KernelConfig) FlowtableSupported() error {
	if _, err := os.Stat(filepath.Join(k.SysModule, "nf_flow_table_inet")); err == nil {
		return nil
	}
	for _, path := range k.Configs {
		value, ok := configValue(path, "CONFIG_NF_FLOW_TABLE_INET")
		if !ok {
			continue
		}
		switch value {
		case "y":
			return nil
		case "m":
			if found, _ := filepath.Glob(filepath.Join(k.Modules, "kernel/net/netfilter/nf_flow_table_inet.ko*")); len(found) > 0 {
				return nil
			}
			return fmt.Errorf("%w: configured as a module but %s has no nf_flow_table_inet.ko", ErrNoFlowtable, k.Modules)
		}
		return fmt.Errorf("%w: not set in %s", ErrNoFlowtable, path)
	}
	return nil
}

// configValue returns the value of key in a kernel configuration file
// (gzip-compressed when its name ends in .gz): "y", "m", "" for "is not
// set", and ok false when the file is unreadable.
func configValue(path, key string) (value string, ok bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	var r io.Reader = f
	if filepath.Ext(path) == ".gz" {
		gz, err := gzip.NewReader(f)
		if err != nil {
			return "", false
		}
		defer gz.Close()
		r = gz
	}
	set, unset := []byte(key+"="), []byte("# "+key+" is not set")
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Bytes()
		if v, found := bytes.CutPrefix(line, set); found {
			return string(v), true
		}
		if bytes.Equal(line, unset) {
			return "", true
		}
	}
	return "", sc.Err() == nil
}

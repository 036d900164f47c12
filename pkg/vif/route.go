package vif

// Route policy: every address of a client gets a host route through its
// vif, with a metric that prefers the most recently started domain.

// MaxDomid is the highest domain id Xen hands out; it also anchors the
// route metric so that later domains' routes win.
const MaxDomid = 32752

// Metric is the route metric for a client domain: a higher domid (a more
// recently started domain reusing an address) gets the preferred route.
func Metric(domid int) int { return MaxDomid - domid }

package sandbox

import (
	"errors"
	"fmt"
)

// ClientSpec describes a client qube and its virtual interface.
type ClientSpec struct {
	Domid, Devid int
	// IPv4 and IPv6 are the client's own addresses (no prefix length);
	// empty means the client has none of that family.
	IPv4, IPv6 string
	// Gateway is the client's IPv4 gateway (DefaultGateway when empty);
	// Gateway6 its IPv6 gateway (none when empty).
	Gateway, Gateway6 string
	// MAC is the client's own MAC; when empty 00:16:3e:5e:6c:XX with XX
	// the low byte of Domid.
	MAC string
	// DeferVif leaves the veth pair to a later Client.CreateVif, as when a
	// device appears after its qube started.
	DeferVif bool
	// DisableIPv6OnVif turns IPv6 off on the network qube's end of the vif
	// as soon as it exists, as a qube with IPv6 disabled has it.
	DisableIPv6OnVif bool
}

// Client is a client qube's namespace and the name of its vif in the
// network qube.
type Client struct {
	NS   *NS
	Vif  string // vif<domid>.<devid>
	Spec ClientSpec

	netvm *NS
}

// AddClient creates the client's namespace and, unless the spec defers
// it, its vif. On failure the namespace is removed again.
func (s *Sandbox) AddClient(spec ClientSpec) (c *Client, err error) {
	// The upper bound of a domid is the hotplug tool's to check
	// (vif.MaxDomid): tests hand it out-of-range ones on purpose.
	if spec.Domid < 0 || spec.Devid < 0 {
		return nil, fmt.Errorf("add client: domid %d devid %d out of range", spec.Domid, spec.Devid)
	}
	if spec.Gateway == "" {
		spec.Gateway = DefaultGateway
	}
	if spec.MAC == "" {
		spec.MAC = fmt.Sprintf("00:16:3e:5e:6c:%02x", spec.Domid&0xff)
	}
	c = &Client{
		NS:    &NS{Name: fmt.Sprintf("%s-c%dx%d", s.ID, spec.Domid, spec.Devid)},
		Vif:   fmt.Sprintf("vif%d.%d", spec.Domid, spec.Devid),
		Spec:  spec,
		netvm: s.NetVM,
	}
	if _, err := run(nil, "ip", "netns", "add", c.NS.Name); err != nil {
		return nil, fmt.Errorf("add client %s: %w", c.Vif, err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, DeleteNamespace(c.NS.Name))
			c = nil
		}
	}()
	if err := c.NS.IPBatch("link set lo up"); err != nil {
		return c, fmt.Errorf("add client %s: %w", c.Vif, err)
	}
	if !spec.DeferVif {
		if err := c.CreateVif(); err != nil {
			return c, err
		}
	}
	return c, nil
}

// CreateVif creates the veth pair the way Xen hands a vif to the hotplug
// script: in the network qube down, without address, group 0, MAC
// fe:ff:ff:ff:ff:ff; in the client up and fully configured.
func (c *Client) CreateVif() error {
	if err := c.netvm.IPBatch(fmt.Sprintf("link add %s address fe:ff:ff:ff:ff:ff type veth peer name eth0 address %s netns %s",
		c.Vif, c.Spec.MAC, c.NS.Name)); err != nil {
		return fmt.Errorf("create %s: %w", c.Vif, err)
	}
	if c.Spec.DisableIPv6OnVif {
		if err := c.DisableIPv6OnVif(); err != nil {
			return err
		}
	}
	commands := []string{"link set eth0 up"}
	if c.Spec.IPv4 != "" {
		commands = append(commands,
			"addr add "+c.Spec.IPv4+"/32 dev eth0",
			"route add "+c.Spec.Gateway+" dev eth0 scope link",
			"route add default via "+c.Spec.Gateway+" dev eth0",
		)
	}
	if c.Spec.IPv6 != "" {
		commands = append(commands, "addr add "+c.Spec.IPv6+"/128 dev eth0 nodad")
	}
	if c.Spec.Gateway6 != "" {
		commands = append(commands,
			"route add "+c.Spec.Gateway6+" dev eth0",
			"route add default via "+c.Spec.Gateway6+" dev eth0",
		)
	}
	if err := c.NS.IPBatch(commands...); err != nil {
		return fmt.Errorf("configure client end of %s: %w", c.Vif, err)
	}
	return nil
}

// DeleteVif removes the veth pair, as Xen does when the device goes away.
// It deletes the client's end, which works whatever the network qube did
// with its end (renamed it, moved it into another namespace).
func (c *Client) DeleteVif() error {
	if err := c.NS.IPBatch("link delete eth0"); err != nil {
		return fmt.Errorf("delete %s: %w", c.Vif, err)
	}
	return nil
}

// DisableIPv6OnVif turns IPv6 off on the network qube's end of the vif.
func (c *Client) DisableIPv6OnVif() error {
	return c.netvm.SetSysctl("net/ipv6/conf/"+c.Vif+"/disable_ipv6", "1")
}

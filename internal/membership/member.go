package membership

import (
	"net"
	"strconv"

	"github.com/hashicorp/serf/serf"
)

// Tag keys and values, the ones Consul puts in its LAN tags, because Consul tools read
// them from /v1/agent/members.
const (
	TagRole       = "role"     // RoleServer or RoleClient
	TagDatacenter = "dc"       // datacenter name
	TagID         = "id"       // node ID, which is also the Raft server ID
	TagPort       = "port"     // server RPC (Raft) port, servers only
	TagExpect     = "expect"   // bootstrap-expect, servers only
	TagVsn        = "vsn"      // protocol version
	TagRaftVsn    = "raft_vsn" // Raft protocol version
	TagBuild      = "build"    // wolke version

	RoleServer = "consul" // TagRole of a server
	RoleClient = "node"   // TagRole of a client
)

// Status is a member's state, with Consul's (and serf's) numbers, as /v1/agent/members
// reports them. The values are wire-visible: never renumber.
type Status int

const (
	StatusNone    Status = 0
	StatusAlive   Status = 1
	StatusLeaving Status = 2
	StatusLeft    Status = 3
	StatusFailed  Status = 4
)

// String names the status the way Consul's CLI prints it.
func (s Status) String() string {
	switch s {
	case StatusNone:
		return "none"
	case StatusAlive:
		return "alive"
	case StatusLeaving:
		return "leaving"
	case StatusLeft:
		return "left"
	case StatusFailed:
		return "failed"
	default:
		return "unknown(" + strconv.Itoa(int(s)) + ")"
	}
}

// Member is one member of the pool as this node currently knows it. Field names match
// Consul's /v1/agent/members object.
type Member struct {
	Name   string
	Addr   string // IP address, as text
	Port   uint16 // gossip port
	Tags   map[string]string
	Status Status

	// Memberlist protocol versions (Protocol*) and serf protocol versions (Delegate*)
	// the member understands and speaks.
	ProtocolMin, ProtocolMax, ProtocolCur uint8
	DelegateMin, DelegateMax, DelegateCur uint8
}

// IsServer reports whether the member is a server (TagRole is RoleServer).
func (m Member) IsServer() bool { return m.Tags[TagRole] == RoleServer }

// ID is the member's node ID (TagID), which is also its Raft server ID.
func (m Member) ID() string { return m.Tags[TagID] }

// Datacenter is the member's datacenter (TagDatacenter).
func (m Member) Datacenter() string { return m.Tags[TagDatacenter] }

// Build is the member's wolke version (TagBuild).
func (m Member) Build() string { return m.Tags[TagBuild] }

// RPCAddr is the server RPC address, "ip:port" from Addr and TagPort; "" when the
// member advertises no valid RPC port (clients).
func (m Member) RPCAddr() string {
	p, err := strconv.Atoi(m.Tags[TagPort])
	if err != nil || p < 1 || p > 65535 || m.Addr == "" {
		return ""
	}
	return net.JoinHostPort(m.Addr, strconv.Itoa(p))
}

// Expect is the member's bootstrap-expect (TagExpect); 0 when absent or not a number.
func (m Member) Expect() int {
	n, err := strconv.Atoi(m.Tags[TagExpect])
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// fromSerf copies a serf member; the tag map is copied so callers may keep it.
func fromSerf(s serf.Member) Member {
	tags := make(map[string]string, len(s.Tags))
	for k, v := range s.Tags {
		tags[k] = v
	}
	addr := ""
	if s.Addr != nil {
		addr = s.Addr.String()
	}
	return Member{
		Name:        s.Name,
		Addr:        addr,
		Port:        s.Port,
		Tags:        tags,
		Status:      Status(s.Status),
		ProtocolMin: s.ProtocolMin,
		ProtocolMax: s.ProtocolMax,
		ProtocolCur: s.ProtocolCur,
		DelegateMin: s.DelegateMin,
		DelegateMax: s.DelegateMax,
		DelegateCur: s.DelegateCur,
	}
}

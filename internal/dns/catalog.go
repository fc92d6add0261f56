package dns

import "context"

// Catalog is what the DNS server reads. It is the agent's local view of the replicated
// catalog: calls must be fast (no network round trip, no waiting for the leader) and
// safe for concurrent use, as every query calls them from its own goroutine.
//
// Names arrive lower-cased, as DNS names are case-insensitive: match service, tag and
// node names without regard to case, as Consul's catalog does.
type Catalog interface {
	// ServiceInstances returns every instance of a service (only those with the tag,
	// when tag is not empty), whatever their health: the server filters by health. An
	// unknown service has no instances (and no error). The slice returned becomes the
	// server's: it filters and shuffles it in place (the Instances' Tags are only read).
	ServiceInstances(ctx context.Context, service, tag string) ([]Instance, error)
	// Node returns a node's address and metadata, and false if the node is unknown.
	Node(ctx context.Context, name string) (NodeInfo, bool, error)
	// Datacenter is the local datacenter name.
	Datacenter() string
}

// Health values of an instance, as the catalog aggregates them from the node's and the
// service's checks (Consul's api.HealthPassing and so on; maintenance is critical).
const (
	HealthPassing  = "passing"
	HealthWarning  = "warning"
	HealthCritical = "critical"
)

// Instance is one registered instance of a service.
type Instance struct {
	// Node is the name of the node the instance runs on.
	Node string
	// NodeAddress is the node's address: an IP, or a host name.
	NodeAddress string
	// ServiceAddress is the instance's own address, empty to use the node's.
	ServiceAddress string
	// Port is the instance's port.
	Port int
	// Tags are the instance's tags (informational: ServiceInstances filters by tag).
	Tags []string
	// Health is the aggregated status of the node's and the instance's checks:
	// HealthPassing, HealthWarning or HealthCritical.
	Health string
	// Weights are the instance's SRV weights (Consul's Service.Weights); the server
	// picks Passing or Warning by Health, as Consul does.
	Weights Weights
}

// Weights are the SRV weights of an instance by health. The zero value means that none
// were registered: both are 1, Consul's default. (Consul requires Passing ≥ 1 when
// weights are given, so Passing 0 always means "not given".)
type Weights struct {
	Passing int
	Warning int
}

// NodeInfo describes a node.
type NodeInfo struct {
	// Name is the node's name.
	Name string
	// Address is the node's address: an IP, or a host name.
	Address string
	// Meta is the node's metadata, answered as TXT records (RFC 1464 key=value).
	Meta map[string]string
}

// ServerServiceName is the service whose instances are the name servers of the zone in
// NS answers: Consul servers register themselves as the service "consul".
const ServerServiceName = "consul"

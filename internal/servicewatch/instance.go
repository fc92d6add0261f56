package servicewatch

import (
	"cmp"
	"maps"
	"slices"

	"github.com/hashicorp/consul/api"
)

// Instance is one passing instance of a service.
type Instance struct {
	ID      string // the service instance's ID (unique per node, not across nodes)
	Service string
	Node    string
	Address string // Service.Address, else Node.Address
	Port    int
	Tags    []string
	Meta    map[string]string
	Weight  int // Service.Weights.Passing, 1 if unset
}

// EndpointID is Node + "/" + ID, unique within the service (instance IDs are only
// unique per node): the ID to give the instance's balance.Endpoint.
func (i Instance) EndpointID() string { return i.Node + "/" + i.ID }

// instances converts a health answer into the sorted instance list.
func instances(entries []*api.ServiceEntry) []Instance {
	out := make([]Instance, 0, len(entries))
	for _, e := range entries {
		if e == nil || e.Service == nil {
			continue
		}
		in := Instance{
			ID:      e.Service.ID,
			Service: e.Service.Service,
			Address: e.Service.Address,
			Port:    e.Service.Port,
			Tags:    e.Service.Tags,
			Meta:    e.Service.Meta,
			Weight:  e.Service.Weights.Passing,
		}
		if e.Node != nil {
			in.Node = e.Node.Node
			if in.Address == "" {
				in.Address = e.Node.Address
			}
		}
		if in.Weight <= 0 {
			in.Weight = 1
		}
		out = append(out, in)
	}
	slices.SortFunc(out, func(a, b Instance) int {
		return cmp.Or(cmp.Compare(a.ID, b.ID), cmp.Compare(a.Node, b.Node))
	})
	return out
}

func equalInstances(a, b []Instance) bool {
	return slices.EqualFunc(a, b, func(x, y Instance) bool {
		return x.ID == y.ID && x.Service == y.Service && x.Node == y.Node && x.Address == y.Address &&
			x.Port == y.Port && x.Weight == y.Weight && slices.Equal(x.Tags, y.Tags) && maps.Equal(x.Meta, y.Meta)
	})
}

// Package dns is wolke's DNS interface to the service catalog, answering the names
// Consul's DNS interface answers, in the same way:
//
//	NAME.service[.DC].DOMAIN               A/AAAA of the healthy instances of NAME
//	TAG.NAME.service[.DC].DOMAIN           the same, only instances tagged TAG
//	_NAME._tcp.service[.DC].DOMAIN         RFC 2782 SRV (any protocol label but _tcp is a tag)
//	_NAME._TAG.service[.DC].DOMAIN         RFC 2782 SRV of the instances tagged TAG
//	NODE.node[.DC].DOMAIN                  A/AAAA (and TXT: node metadata) of a node
//	HEXIP.addr[.DC].DOMAIN                 the address encoded in the name (SRV targets)
//
// The datacenter label is optional, as is Consul's explicit form DC.dc. Every answer
// comes from the local state the Catalog holds (Consul's stale mode, its default);
// names in other zones are forwarded to the configured recursors, or refused.
//
// The package has four parts: the Server (config.go, server.go: lifecycle, listeners,
// reloadable settings), the query router (router.go: names to lookups, errors to
// rcodes), the record builder (records.go) and response trimming for UDP and TCP
// (trim.go). The Catalog it reads from is an interface (catalog.go) that the agent
// implements. See docs/dns.md for the behaviour in detail.
package dns

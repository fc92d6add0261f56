// Package confsync keeps processes and files in step with the data of a wolke (or Consul)
// agent, the way `consul watch` and consul-template do:
//
//   - [Watch] is one blocking-query loop: it re-issues a [Query] with the last index,
//     calls its handler once with the initial result and again whenever the index moved
//     and the result changed, resets the index when it goes backwards, and backs off on
//     errors. loop.go.
//   - The queries of `consul watch`'s types (key, keyprefix, services, nodes, service,
//     checks, event), each returning exactly the value consul/api decodes, so that it
//     marshals to Consul's JSON shape. query.go.
//   - [Runner] renders Go text/template files whose functions (key, keyOrDefault,
//     keyExists, ls, tree, service, services, env) register the data they read as
//     dependencies; each dependency gets one [Watch], a change re-renders, the output is
//     written atomically and a reload command runs when the file changed. runner.go,
//     template.go, funcs.go.
//
// The package talks to the agent only through the consul/api client it is given.
package confsync

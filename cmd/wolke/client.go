package main

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/hashicorp/consul/api"
	"github.com/spf13/cobra"
)

// agentDefaultAddr is where a CLI command looks for the agent's HTTP API when neither a
// flag nor the environment says otherwise.
const agentDefaultAddr = "127.0.0.1:8500"

// clientFlags are the connection settings of every command that talks to an agent (wolke
// or Consul) over its HTTP API. Each setting comes from the first of:
//
//	-http-addr   flag, WOLKE_HTTP_ADDR, CONSUL_HTTP_ADDR, 127.0.0.1:8500
//	-token       flag, WOLKE_TOKEN, CONSUL_HTTP_TOKEN_FILE (the file's content), CONSUL_HTTP_TOKEN
//
// WOLKE_<FLAG> reaches the flag through the root command's applyEnv; the CONSUL_*
// variables are read here. No other variable is used: the consul/api client is built
// from an explicit configuration with its own HTTP client, so CONSUL_HTTP_SSL,
// CONSUL_CACERT, CONSUL_HTTP_AUTH and the like have no effect. (api.NewClient still
// copies CONSUL_NAMESPACE and CONSUL_PARTITION into query parameters; wolke ignores
// them.)
type clientFlags struct {
	httpAddr string
	token    string
	cmd      *cobra.Command
}

// addClientFlags defines -http-addr and -token on cmd.
func addClientFlags(cmd *cobra.Command) *clientFlags {
	c := &clientFlags{cmd: cmd}
	f := cmd.Flags()
	f.StringVar(&c.httpAddr, "http-addr", agentDefaultAddr,
		"agent HTTP API address, HOST:PORT or http(s)://HOST:PORT (else WOLKE_HTTP_ADDR, then CONSUL_HTTP_ADDR)")
	f.StringVar(&c.token, "token", "",
		"ACL token sent with every request (else WOLKE_TOKEN, then CONSUL_HTTP_TOKEN_FILE, then CONSUL_HTTP_TOKEN)")
	return c
}

// agentEndpoint is a resolved agent address and token.
type agentEndpoint struct {
	Scheme     string // "http" or "https"
	Host       string // HOST:PORT
	PathPrefix string // a reverse proxy's path in front of /v1, or ""
	Token      string
}

// URL returns the endpoint's base URL, for messages.
func (e agentEndpoint) URL() string { return e.Scheme + "://" + e.Host + e.PathPrefix }

// resolve works out the endpoint from the flags and, where a flag was not set (neither on
// the command line nor through WOLKE_<FLAG>), from the Consul variables in lookupEnv.
// A malformed address is a usage error.
func (c *clientFlags) resolve(lookupEnv func(string) (string, bool)) (agentEndpoint, error) {
	addr, source := c.httpAddr, "-http-addr"
	if !c.cmd.Flags().Changed("http-addr") {
		if v, ok := lookupEnv(api.HTTPAddrEnvName); ok && v != "" {
			addr, source = v, api.HTTPAddrEnvName
		}
	}
	ep, err := parseAgentAddr(addr)
	if err != nil {
		return agentEndpoint{}, usageErrorf("invalid %s %q: %v", source, addr, err)
	}
	ep.Token = c.token
	if !c.cmd.Flags().Changed("token") {
		if path, ok := lookupEnv(api.HTTPTokenFileEnvName); ok && path != "" {
			b, err := os.ReadFile(path)
			if err != nil {
				return agentEndpoint{}, fmt.Errorf("reading %s: %w", api.HTTPTokenFileEnvName, err)
			}
			ep.Token = strings.TrimSpace(string(b))
		} else if v, ok := lookupEnv(api.HTTPTokenEnvName); ok {
			ep.Token = v
		}
	}
	return ep, nil
}

// parseAgentAddr accepts Consul's forms of an agent address: HOST:PORT, or
// http://HOST:PORT and https://HOST:PORT with an optional path prefix (an agent behind a
// reverse proxy).
func parseAgentAddr(s string) (agentEndpoint, error) {
	raw := s
	if !strings.Contains(s, "://") {
		raw = "http://" + s
	}
	u, err := url.Parse(raw)
	if err != nil {
		return agentEndpoint{}, fmt.Errorf("want HOST:PORT or http://HOST:PORT")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return agentEndpoint{}, fmt.Errorf("scheme %q: want http or https", u.Scheme)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return agentEndpoint{}, fmt.Errorf("want HOST:PORT or http://HOST:PORT, without user, query or fragment")
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil || host == "" {
		return agentEndpoint{}, fmt.Errorf("want HOST:PORT or http://HOST:PORT")
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return agentEndpoint{}, fmt.Errorf("port %q: want 1 to 65535", port)
	}
	if !strings.Contains(s, "://") && u.Path != "" {
		return agentEndpoint{}, fmt.Errorf("a path needs the scheme: http://%s", s)
	}
	return agentEndpoint{Scheme: u.Scheme, Host: u.Host, PathPrefix: strings.TrimSuffix(u.Path, "/")}, nil
}

// client returns a consul/api client for the resolved endpoint.
func (c *clientFlags) client() (*api.Client, error) {
	ep, err := c.resolve(os.LookupEnv)
	if err != nil {
		return nil, err
	}
	return ep.client()
}

func (e agentEndpoint) client() (*api.Client, error) {
	// Every field api.NewClient would otherwise fill from CONSUL_* variables is set here,
	// the HTTP client included (which makes the TLS variables moot). The transport is
	// Go's default one: proxies from HTTP_PROXY/NO_PROXY, keep-alive within one command.
	// One corner is api.NewClient's own: an empty Token (say -token="") is replaced by
	// CONSUL_HTTP_TOKEN, and a Token equal to CONSUL_HTTP_TOKEN by the content of
	// CONSUL_HTTP_TOKEN_FILE when both are set.
	transport := http.DefaultTransport.(*http.Transport).Clone()
	c, err := api.NewClient(&api.Config{
		Address:    e.Host,
		Scheme:     e.Scheme,
		PathPrefix: e.PathPrefix,
		Token:      e.Token,
		Transport:  transport,
		HttpClient: &http.Client{Transport: transport},
	})
	if err != nil {
		return nil, fmt.Errorf("creating a client for %s: %w", e.URL(), err)
	}
	return c, nil
}

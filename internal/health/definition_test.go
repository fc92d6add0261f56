package health

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDefinitionDecode(t *testing.T) {
	tests := []struct {
		name string
		json string
		want Definition
	}{
		{
			name: "consul api fields",
			json: `{"ID":"web-http","Name":"web","ServiceID":"web-1","Notes":"n","Status":"passing",
				"HTTP":"http://127.0.0.1:8080/health","Method":"POST","Header":{"X-A":["1","2"]},"Body":"{}",
				"TLSServerName":"web.local","TLSSkipVerify":true,"Interval":"10s","Timeout":"1s",
				"DeregisterCriticalServiceAfter":"90m","SuccessBeforePassing":2,"FailuresBeforeWarning":1,
				"FailuresBeforeCritical":3,"OutputMaxSize":100,"DisableRedirects":true}`,
			want: Definition{ID: "web-http", Name: "web", ServiceID: "web-1", Notes: "n", Status: "passing",
				HTTP: "http://127.0.0.1:8080/health", Method: "POST", Header: map[string][]string{"X-A": {"1", "2"}},
				Body: "{}", TLSServerName: "web.local", TLSSkipVerify: true, Interval: 10 * time.Second,
				Timeout: time.Second, DeregisterCriticalServiceAfter: 90 * time.Minute, SuccessBeforePassing: 2,
				FailuresBeforeWarning: 1, FailuresBeforeCritical: 3, OutputMaxSize: 100, DisableRedirects: true},
		},
		{
			name: "snake_case aliases",
			json: `{"check_id":"c","name":"n","service_id":"s","grpc":"127.0.0.1:9000/svc","grpc_use_tls":true,
				"tls_skip_verify":true,"tls_server_name":"x","interval":"5s","deregister_critical_service_after":"1m",
				"success_before_passing":1,"failures_before_critical":4,"failures_before_warning":2,"output_max_size":10}`,
			want: Definition{ID: "c", Name: "n", ServiceID: "s", GRPC: "127.0.0.1:9000/svc", GRPCUseTLS: true,
				TLSSkipVerify: true, TLSServerName: "x", Interval: 5 * time.Second,
				DeregisterCriticalServiceAfter: time.Minute, SuccessBeforePassing: 1, FailuresBeforeCritical: 4,
				FailuresBeforeWarning: 2, OutputMaxSize: 10},
		},
		{
			name: "CheckID alias and ScriptArgs",
			json: `{"CheckID":"c","Name":"n","ScriptArgs":["/bin/true","-x"],"Interval":"1s"}`,
			want: Definition{ID: "c", Name: "n", Args: []string{"/bin/true", "-x"}, Interval: time.Second},
		},
		{
			name: "ID wins over CheckID",
			json: `{"CheckID":"alias","ID":"canonical","Name":"n","TTL":"30s"}`,
			want: Definition{ID: "canonical", Name: "n", TTL: 30 * time.Second},
		},
		{
			name: "durations as nanoseconds, empty and null",
			json: `{"Name":"n","TCP":"127.0.0.1:80","Interval":10000000000,"Timeout":"","TTL":null}`,
			want: Definition{Name: "n", TCP: "127.0.0.1:80", Interval: 10 * time.Second},
		},
		{
			name: "lower-case keys and unknown keys ignored",
			json: `{"name":"n","ttl":"1m30s","args":["a"],"shell":"/bin/bash","script":"x","Node":"ignored","Definition":{}}`,
			want: Definition{Name: "n", TTL: 90 * time.Second, Args: []string{"a"}, Shell: "/bin/bash", Script: "x"},
		},
		{
			name: "unsupported kinds are decoded",
			json: `{"Name":"n","h2ping":"127.0.0.1:1","docker_container_id":"abc","AliasService":"web","os_service":"x","UDP":"127.0.0.1:53"}`,
			want: Definition{Name: "n", H2PING: "127.0.0.1:1", DockerContainerID: "abc", AliasService: "web", OSService: "x", UDP: "127.0.0.1:53"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Definition
			if err := json.Unmarshal([]byte(tt.json), &got); err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestDefinitionDecodeErrors(t *testing.T) {
	tests := []struct {
		json, want string
	}{
		{`[1]`, "must be a JSON object"},
		{`{"Interval":"10"}`, `Interval "10": time: missing unit`},
		{`{"Timeout":true}`, "Timeout true: must be a duration string"},
		{`{"TTL":1.5}`, "integer nanoseconds"},
		{`{"SuccessBeforePassing":"3"}`, "SuccessBeforePassing must be a JSON integer, not string"},
		{`{"Header":{"a":"b"}}`, "must be a JSON array"},
		{`{"TLSSkipVerify":"yes"}`, "TLSSkipVerify must be a JSON boolean"},
	}
	for _, tt := range tests {
		t.Run(tt.json, func(t *testing.T) {
			var d Definition
			err := json.Unmarshal([]byte(tt.json), &d)
			if err == nil {
				t.Fatalf("Unmarshal succeeded: %+v", d)
			}
			if !errors.Is(err, ErrInvalidDefinition) {
				t.Errorf("error %v is not ErrInvalidDefinition", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestDefinitionMarshalRoundTrip(t *testing.T) {
	d := Definition{ID: "c", Name: "n", HTTP: "http://127.0.0.1/", Interval: 10 * time.Second,
		Timeout: 1500 * time.Millisecond, DeregisterCriticalServiceAfter: time.Hour, Header: map[string][]string{"A": {"b"}}}
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"Interval":"10s"`, `"Timeout":"1.5s"`, `"DeregisterCriticalServiceAfter":"1h0m0s"`, `"ID":"c"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %s", b, want)
		}
	}
	for _, absent := range []string{`"TTL"`, `"TCP"`, `"Args"`} {
		if strings.Contains(string(b), absent) {
			t.Errorf("%s has empty field %s", b, absent)
		}
	}
	var back Definition
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, d) {
		t.Errorf("round trip: got %+v, want %+v", back, d)
	}
}

func TestDefinitionValidate(t *testing.T) {
	httpDef := Definition{Name: "n", HTTP: "http://127.0.0.1:8080/h", Interval: 10 * time.Second}
	with := func(f func(*Definition)) Definition { d := httpDef; f(&d); return d }
	tests := []struct {
		name    string
		def     Definition
		scripts bool
		want    string // "" means valid
		is      error
	}{
		{name: "http ok", def: httpDef},
		{name: "tcp ok", def: Definition{Name: "n", TCP: "127.0.0.1:22", Interval: time.Second}},
		{name: "tcp named host ok", def: Definition{Name: "n", TCP: "db.local:5432", Interval: time.Second}},
		{name: "grpc ok", def: Definition{Name: "n", GRPC: "127.0.0.1:9000/my.Service", Interval: time.Second}},
		{name: "ttl ok", def: Definition{Name: "n", TTL: time.Second}},
		{name: "script ok when enabled", def: Definition{Name: "n", Args: []string{"/bin/true"}, Interval: time.Second}, scripts: true},
		{name: "shell script ok when enabled", def: Definition{Name: "n", Script: "exit 0", Interval: time.Second}, scripts: true},
		{name: "sub-minimum interval is clamped, not refused", def: with(func(d *Definition) { d.Interval = time.Millisecond })},
		{name: "missing name", def: with(func(d *Definition) { d.Name = " " }), want: "Name is required"},
		{name: "bad status", def: with(func(d *Definition) { d.Status = "ok" }), want: `Status must be passing, warning or critical, not "ok"`},
		{name: "no type", def: Definition{Name: "n", Interval: time.Second}, want: "exactly one of HTTP, TCP, GRPC, TTL, Args/Script (script) must be set"},
		{name: "two types", def: with(func(d *Definition) { d.TCP = "127.0.0.1:1" }), want: "not http and tcp"},
		{name: "ttl and interval", def: Definition{Name: "n", TTL: time.Second, Interval: time.Second}, want: "Interval and TTL cannot both be specified"},
		{name: "unknown type docker", def: Definition{Name: "n", DockerContainerID: "abc", Args: []string{"x"}, Interval: time.Second}, want: `unknown check type "docker"`},
		{name: "unknown type h2ping", def: Definition{Name: "n", H2PING: "127.0.0.1:1", Interval: time.Second}, want: `unknown check type "h2ping"`},
		{name: "missing interval", def: with(func(d *Definition) { d.Interval = 0 }), want: "Interval must be > 0"},
		{name: "negative interval", def: with(func(d *Definition) { d.Interval = -time.Second }), want: "Interval must not be negative"},
		{name: "negative timeout", def: with(func(d *Definition) { d.Timeout = -1 }), want: "Timeout must not be negative"},
		{name: "negative deregister", def: with(func(d *Definition) { d.DeregisterCriticalServiceAfter = -1 }), want: "DeregisterCriticalServiceAfter must not be negative"},
		{name: "negative success count", def: with(func(d *Definition) { d.SuccessBeforePassing = -1 }), want: "SuccessBeforePassing must not be negative"},
		{name: "negative failure count", def: with(func(d *Definition) { d.FailuresBeforeCritical = -2 }), want: "FailuresBeforeCritical must not be negative"},
		{name: "negative output size", def: with(func(d *Definition) { d.OutputMaxSize = -1 }), want: "OutputMaxSize must not be negative"},
		{name: "warning above critical", def: with(func(d *Definition) { d.FailuresBeforeWarning = 3; d.FailuresBeforeCritical = 2 }), want: "FailuresBeforeWarning must not be greater than FailuresBeforeCritical"},
		{name: "http not a url", def: with(func(d *Definition) { d.HTTP = "127.0.0.1:8080/h" }), want: "HTTP must be an http:// or https:// URL"},
		{name: "http bad scheme", def: with(func(d *Definition) { d.HTTP = "ftp://127.0.0.1/" }), want: "HTTP must be an http:// or https:// URL"},
		{name: "invalid method", def: with(func(d *Definition) { d.Method = "GET /" }), want: `invalid Method "GET /"`},
		{name: "invalid header", def: with(func(d *Definition) { d.Header = map[string][]string{"Bad Header": {"x"}} }), want: `invalid Header name "Bad Header"`},
		{name: "tcp no port", def: Definition{Name: "n", TCP: "127.0.0.1", Interval: time.Second}, want: "TCP must be host:port"},
		{name: "tcp port zero", def: Definition{Name: "n", TCP: "127.0.0.1:0", Interval: time.Second}, want: "TCP port must be between 1 and 65535"},
		{name: "tcp port too big", def: Definition{Name: "n", TCP: "127.0.0.1:65536", Interval: time.Second}, want: "TCP port must be between 1 and 65535"},
		{name: "tcp port name", def: Definition{Name: "n", TCP: "127.0.0.1:http", Interval: time.Second}, want: "TCP port must be between 1 and 65535"},
		{name: "grpc bad address", def: Definition{Name: "n", GRPC: "nohost/svc", Interval: time.Second}, want: "GRPC must be host:port"},
		{name: "script disabled", def: Definition{Name: "n", Args: []string{"/bin/true"}, Interval: time.Second}, want: "script checks are disabled", is: ErrScriptsDisabled},
		{name: "args and script", def: Definition{Name: "n", Args: []string{"/bin/true"}, Script: "true", Interval: time.Second}, scripts: true, want: "only one of Args and Script"},
		{name: "empty program", def: Definition{Name: "n", Args: []string{""}, Interval: time.Second}, scripts: true, want: "Args[0] must name a program"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.def.Validate(tt.scripts)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate accepted %+v, want %q", tt.def, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q is not one line", err)
			}
			if !errors.Is(err, ErrInvalidDefinition) {
				t.Errorf("error %v is not ErrInvalidDefinition", err)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v is not %v", err, tt.is)
			}
		})
	}
}

func TestDefinitionType(t *testing.T) {
	tests := []struct {
		def  Definition
		want string
	}{
		{Definition{HTTP: "http://x"}, TypeHTTP},
		{Definition{TCP: "x:1"}, TypeTCP},
		{Definition{TTL: time.Second}, TypeTTL},
		{Definition{GRPC: "x:1"}, TypeGRPC},
		{Definition{Args: []string{"x"}}, TypeScript},
		{Definition{Script: "x"}, TypeScript},
		{Definition{DockerContainerID: "c", Args: []string{"x"}}, "docker"},
		{Definition{AliasNode: "n"}, "alias"},
		{Definition{}, ""},
		{Definition{HTTP: "http://x", TTL: time.Second}, ""},
	}
	for _, tt := range tests {
		if got := tt.def.Type(); got != tt.want {
			t.Errorf("Type(%+v) = %q, want %q", tt.def, got, tt.want)
		}
	}
}

func TestDefinitionDefaults(t *testing.T) {
	if got := (Definition{Name: "n"}).CheckID(); got != "n" {
		t.Errorf("CheckID defaults to %q, want the name", got)
	}
	if got := (Definition{HTTP: "http://x"}).effectiveTimeout(); got != 10*time.Second {
		t.Errorf("HTTP timeout default %v", got)
	}
	if got := (Definition{Args: []string{"x"}}).effectiveTimeout(); got != 30*time.Second {
		t.Errorf("script timeout default %v", got)
	}
	if got := (Definition{}).outputMaxSize(); got != 4096 {
		t.Errorf("output max size default %d", got)
	}
}

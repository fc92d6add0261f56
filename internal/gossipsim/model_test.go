package gossipsim

import (
	"testing"
	"time"
)

// TestModelSerfTable checks the figures Serf's convergence simulator publishes: at a
// 0.2 s interval and fanout 3, when 99.99 % of the nodes have a broadcast.
func TestModelSerfTable(t *testing.T) {
	tests := []struct {
		nodes  int
		loss   float64
		rounds float64
		want   time.Duration
	}{
		{10, 0, 8, 1600 * time.Millisecond},
		{30, 0, 9, 1800 * time.Millisecond},
		{100, 0, 10, 2000 * time.Millisecond},
		{1000, 0, 11, 2200 * time.Millisecond},
		{10000, 0, 13, 2600 * time.Millisecond},
		{1000, 0.5, 22, 4400 * time.Millisecond},
	}
	for _, tt := range tests {
		p := DefaultParams()
		p.Interval = 200 * time.Millisecond
		p.Fanout = 3
		p.Nodes = tt.nodes
		p.Loss = tt.loss
		r, err := Model(p)
		if err != nil {
			t.Fatalf("Model(%d nodes, loss %v): %v", tt.nodes, tt.loss, err)
		}
		if got := ModelRounds(tt.nodes, modelContact(p), 0.9999); got != tt.rounds {
			t.Errorf("%d nodes, loss %v: 99.99 %% after %v rounds, want %v", tt.nodes, tt.loss, got, tt.rounds)
		}
		l, _ := r.Level(0.9999)
		if l.Median != tt.want {
			t.Errorf("%d nodes, loss %v: 99.99 %% after %v, want %v", tt.nodes, tt.loss, l.Median, tt.want)
		}
	}
}

func TestModelShapeAndBandwidth(t *testing.T) {
	p := DefaultParams()
	p.Nodes = 1000
	r, err := Model(p)
	if err != nil {
		t.Fatal(err)
	}
	// Serf: 1400 B · 3 / 0.2 s · 2 = 42 kB/s.
	if r.Bandwidth != 42000 {
		t.Errorf("bandwidth %v B/s, want 42000", r.Bandwidth)
	}
	prev := time.Duration(-1)
	for _, l := range r.Levels {
		if l.Median < prev {
			t.Errorf("level %v at %v before the previous level at %v", l.Share, l.Median, prev)
		}
		prev = l.Median
	}
	for i := 1; i < len(r.Curve); i++ {
		if r.Curve[i].Share < r.Curve[i-1].Share || r.Curve[i].T <= r.Curve[i-1].T {
			t.Fatalf("curve not increasing at %d: %v then %v", i, r.Curve[i-1], r.Curve[i])
		}
	}
	if last := r.Curve[len(r.Curve)-1].Share; last < 0.9999 {
		t.Errorf("curve ends at share %v, want it drawn past 99.99 %%", last)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*Params)
		param string
	}{
		{"defaults", func(*Params) {}, ""},
		{"no nodes", func(p *Params) { p.Nodes = 0 }, "nodes"},
		{"too many nodes", func(p *Params) { p.Nodes = MaxNodes + 1 }, "nodes"},
		{"zero interval", func(p *Params) { p.Interval = 0 }, "interval"},
		{"zero fanout", func(p *Params) { p.Fanout = 0 }, "fanout"},
		{"zero retransmit", func(p *Params) { p.RetransmitMult = 0 }, "retransmit-mult"},
		{"loss above 1", func(p *Params) { p.Loss = 1.5 }, "loss"},
		{"total loss", func(p *Params) { p.Loss = 1 }, "loss"},
		{"negative failed", func(p *Params) { p.Failed = -0.1 }, "failed"},
		{"all failed after rounding", func(p *Params) { p.Nodes = 2; p.Failed = 0.8 }, "failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := DefaultParams()
			tt.edit(&p)
			err := p.Validate()
			if tt.param == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			pe, ok := err.(*ParamError)
			if !ok || pe.Param != tt.param {
				t.Fatalf("Validate = %v, want a ParamError for %q", err, tt.param)
			}
		})
	}
}

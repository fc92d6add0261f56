package agent

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wolke-platform/wolke/internal/command"
	"github.com/wolke-platform/wolke/internal/consensus"
	"github.com/wolke-platform/wolke/internal/rpc"
	"github.com/wolke-platform/wolke/internal/state"
)

// A server that is not the leader handles a KV write itself up to the encoded Raft
// command and passes only that to the leader, as a call (rpc/call.go), the way
// Consul's followers forward RPCs rather than HTTP requests. The leader then spends
// on it what it spends on its own clients' writes minus the HTTP exchange, and the
// calls of many writers share system calls in both directions.
//
// Call request: kind (1 byte), timeout in milliseconds (uint32), the command.
// Answer: kind (1 byte), Raft index (uint64), payload.

const callApply byte = 1

const (
	replyNil byte = iota
	replyFalse
	replyTrue
	replyTxn   // payload: msgpack TxnResponse
	replyError // payload: error code (1 byte), message
	replyUnknownCall
)

// Error codes carry the errors the API maps to a status of their own; any other
// error travels as its message.
const (
	codeOther byte = iota
	// codeRejected: the receiver is not the leader and did not enqueue the command;
	// the sender may try again elsewhere.
	codeRejected
	codeNoLeader
	codeTimeout
	codeShutdown
	codeSessionNotFound
	codeSessionExists
	codeNodeIDConflict
	// codeLeadershipLost: the command was enqueued, then leadership was lost; it may
	// or may not be committed.
	codeLeadershipLost
)

var codeErrors = map[byte]error{
	codeNoLeader:        consensus.ErrNoLeader,
	codeTimeout:         consensus.ErrTimeout,
	codeShutdown:        consensus.ErrShutdown,
	codeSessionNotFound: state.ErrSessionNotFound,
	codeSessionExists:   state.ErrSessionExists,
	codeNodeIDConflict:  state.ErrNodeIDConflict,
}

// errRejected is the sender's view of codeRejected.
var errRejected = errors.New("the server is not the leader")

// maxCallWait bounds how long a sender waits for the leader's answer: a leader that
// is paused keeps the connection open and answers nothing.
const maxCallWait = 30 * time.Second

type callMetrics struct {
	sent   *prometheus.CounterVec
	served prometheus.Counter
}

func newCallMetrics(reg prometheus.Registerer) *callMetrics {
	m := &callMetrics{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wolke_forward_commands_total",
			Help: "Raft commands this server passed to the leader, by outcome.",
		}, []string{"outcome"}),
		served: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wolke_forward_commands_applied_total",
			Help: "Raft commands this server applied as leader for other servers.",
		}),
	}
	reg.MustRegister(m.sent, m.served)
	return m
}

// CanApply implements httpapi.Backend: a server applies here when it leads, and
// otherwise when the leader accepts calls (an older leader does not: the request is
// then forwarded whole).
func (a *Agent) CanApply(ctx context.Context) bool {
	if a.node == nil || a.calls == nil {
		return false
	}
	if a.node.IsLeader() {
		return true
	}
	addr, _ := a.node.Leader()
	return addr != "" && a.calls.Supported(ctx, addr)
}

// Apply implements httpapi.Backend. The leader applies; any other server passes the
// command to the leader, waiting out an election for up to LeaderWait, and tries
// again only while the command provably was not enqueued.
func (a *Agent) Apply(ctx context.Context, cmd []byte) (any, uint64, error) {
	if a.node == nil {
		return nil, 0, consensus.ErrNoLeader
	}
	giveUp := time.Now().Add(a.cfg.LeaderWait)
	var req []byte
	for {
		if a.node.IsLeader() || a.calls == nil {
			if err := a.waitLeader(ctx); err != nil {
				return nil, 0, err
			}
			return a.node.Apply(ctx, cmd)
		}
		if addr, _ := a.node.Leader(); addr != "" {
			if req == nil {
				req = applyRequest(cmd, a.cfg.Raft.ApplyTimeout)
			}
			res, idx, err := a.applyAt(ctx, addr, req)
			if !errors.Is(err, errRejected) && !isNotSent(err) {
				return res, idx, err
			}
		}
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		if time.Now().After(giveUp) {
			return nil, 0, consensus.ErrNoLeader
		}
		select {
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		case <-a.stopCh:
			return nil, 0, consensus.ErrShutdown
		case <-time.After(time.Duration(10+rand.IntN(20)) * time.Millisecond):
		}
	}
}

func isNotSent(err error) bool {
	var ns *rpc.NotSentError
	return errors.As(err, &ns)
}

func applyRequest(cmd []byte, timeout time.Duration) []byte {
	req := make([]byte, 0, 5+len(cmd))
	req = append(req, callApply)
	req = binary.BigEndian.AppendUint32(req, uint32(min(timeout.Milliseconds(), 1<<31)))
	return append(req, cmd...)
}

// applyAt passes one command to the server at addr.
func (a *Agent) applyAt(ctx context.Context, addr string, req []byte) (any, uint64, error) {
	cctx, cancel := context.WithTimeout(ctx, maxCallWait)
	defer cancel()
	reply, err := a.calls.Call(cctx, addr, req)
	if err != nil {
		if isNotSent(err) {
			a.callMetrics.sent.WithLabelValues("not_sent").Inc()
			return nil, 0, err
		}
		a.callMetrics.sent.WithLabelValues("lost").Inc()
		if ctx.Err() != nil {
			return nil, 0, ctx.Err()
		}
		return nil, 0, fmt.Errorf("forwarding to the leader failed after the command was sent: %w", err)
	}
	res, idx, err := decodeApplyReply(reply)
	if errors.Is(err, errRejected) {
		a.callMetrics.sent.WithLabelValues("rejected").Inc()
	} else {
		a.callMetrics.sent.WithLabelValues("answered").Inc()
	}
	return res, idx, err
}

// serveCall answers a call from another server.
func (a *Agent) serveCall(ctx context.Context, req []byte) []byte {
	if len(req) < 5 || req[0] != callApply {
		return []byte{replyUnknownCall}
	}
	if a.node == nil || !a.node.IsLeader() {
		return encodeApplyReply(nil, 0, errRejected)
	}
	timeout := time.Duration(binary.BigEndian.Uint32(req[1:5])) * time.Millisecond
	ctx, cancel := context.WithTimeout(ctx, max(timeout, time.Millisecond))
	defer cancel()
	if err := a.waitLeader(ctx); err != nil {
		return encodeApplyReply(nil, 0, errRejected)
	}
	res, idx, err := a.node.Apply(ctx, req[5:])
	a.callMetrics.served.Inc()
	return encodeApplyReply(res, idx, err)
}

func encodeApplyReply(res any, idx uint64, err error) []byte {
	b := make([]byte, 9, 16)
	binary.BigEndian.PutUint64(b[1:], idx)
	if err != nil {
		b[0] = replyError
		code := codeOther
		switch {
		case errors.Is(err, errRejected), errors.Is(err, raft.ErrNotLeader):
			// raft.ErrNotLeader comes before the command is enqueued.
			code = codeRejected
		case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrLeadershipTransferInProgress):
			code = codeLeadershipLost
		default:
			for c, e := range codeErrors {
				if errors.Is(err, e) {
					code = c
					break
				}
			}
		}
		b = append(b, code)
		return append(b, err.Error()...)
	}
	switch r := res.(type) {
	case nil:
		b[0] = replyNil
	case bool:
		b[0] = replyFalse
		if r {
			b[0] = replyTrue
		}
	case *command.TxnResponse:
		body, encErr := command.Encode(0, r)
		if encErr != nil {
			return encodeApplyReply(nil, idx, fmt.Errorf("encode the transaction's result: %w", encErr))
		}
		b[0] = replyTxn
		b = append(b, body...)
	default:
		return encodeApplyReply(nil, idx, fmt.Errorf("the leader's state machine answered %T, which cannot be passed on", res))
	}
	return b
}

func decodeApplyReply(b []byte) (any, uint64, error) {
	if len(b) == 1 && b[0] == replyUnknownCall {
		return nil, 0, errors.New("the leader does not know this call")
	}
	if len(b) < 9 {
		return nil, 0, fmt.Errorf("malformed answer from the leader (%d bytes)", len(b))
	}
	idx := binary.BigEndian.Uint64(b[1:9])
	payload := b[9:]
	switch b[0] {
	case replyNil:
		return nil, idx, nil
	case replyFalse:
		return false, idx, nil
	case replyTrue:
		return true, idx, nil
	case replyTxn:
		_, body, err := command.Split(payload)
		if err != nil {
			return nil, idx, fmt.Errorf("malformed transaction result from the leader: %w", err)
		}
		var resp command.TxnResponse
		if err := command.DecodeBody(body, &resp); err != nil {
			return nil, idx, fmt.Errorf("malformed transaction result from the leader: %w", err)
		}
		return &resp, idx, nil
	case replyError:
		if len(payload) < 1 {
			return nil, idx, errors.New("malformed error from the leader")
		}
		code, msg := payload[0], string(payload[1:])
		switch code {
		case codeRejected:
			return nil, idx, errRejected
		case codeLeadershipLost:
			return nil, idx, fmt.Errorf("%w: %w (at the leader: %s)", consensus.ErrNotLeader, raft.ErrLeadershipLost, msg)
		}
		if e, ok := codeErrors[code]; ok {
			return nil, idx, fmt.Errorf("%w (at the leader: %s)", e, msg)
		}
		return nil, idx, errors.New(msg)
	}
	return nil, idx, fmt.Errorf("unknown answer kind %d from the leader", b[0])
}

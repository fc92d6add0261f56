package membership

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync/atomic"

	"github.com/hashicorp/memberlist"
)

// ErrNameConflict means another alive member already uses this node's name.
var ErrNameConflict = errors.New("membership: node name already in use")

// nameGuard is memberlist's merge delegate. It runs on both sides of a join's state
// exchange, before the remote state is merged, and refuses the merge when the remote
// side knows an alive (or suspect) member with our name at another address: the
// joining node then gets ErrNameConflict from Join instead of a half-joined pool and a
// later conflict vote.
type nameGuard struct {
	name   string
	logger *slog.Logger
	ml     atomic.Pointer[memberlist.Memberlist] // set once New has created it
	last   atomic.Pointer[error]                 // last conflict seen, for Join
}

var _ memberlist.MergeDelegate = (*nameGuard)(nil)

func (g *nameGuard) NotifyMerge(peers []*memberlist.Node) error {
	ml := g.ml.Load()
	if ml == nil {
		return nil
	}
	local := ml.LocalNode()
	for _, n := range peers {
		if n.Name != g.name || (n.State != memberlist.StateAlive && n.State != memberlist.StateSuspect) {
			continue
		}
		if n.Addr.Equal(local.Addr) && n.Port == local.Port {
			continue
		}
		addr := net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
		err := fmt.Errorf("%w: %q is held by an alive member at %s (this node is %s); give each agent its own -node name",
			ErrNameConflict, g.name, addr, net.JoinHostPort(local.Addr.String(), strconv.Itoa(int(local.Port))))
		g.last.Store(&err)
		g.logger.Error("refusing to merge with a pool where another member uses this node's name",
			"node", g.name, "other_addr", addr)
		return err
	}
	return nil
}

// take returns and clears the last conflict seen.
func (g *nameGuard) take() error {
	if p := g.last.Swap(nil); p != nil {
		return *p
	}
	return nil
}

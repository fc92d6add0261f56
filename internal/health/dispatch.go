package health

import "sync"

// event is one queued callback: an Update or a Deregistration of check c.
type event struct {
	c      *check
	update Update
	dereg  *Deregistration
}

// dispatcher delivers callbacks from one goroutine so that runners never
// wait for the agent (see the package documentation for the contract).
// Lock order: Manager.mu before dispatcher.mu.
type dispatcher struct {
	mu      sync.Mutex
	queue   []event
	pending map[*check]int // index in queue of c's last undelivered Update
	closed  bool
	// maxQueue is the queue length from which a new Update replaces the
	// check's undelivered one instead of being appended.
	maxQueue int

	wake chan struct{} // capacity 1
	stop chan struct{}
	done chan struct{}
}

func newDispatcher() *dispatcher {
	return &dispatcher{
		pending:  map[*check]int{},
		maxQueue: defaultMaxQueue,
		wake:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
}

// defaultMaxQueue: below it every change is delivered; above it a stalled
// consumer costs at most one more entry per check, not one per change.
const defaultMaxQueue = 1024

// push queues ev. Once the queue holds maxQueue events, an Update replaces
// the same check's undelivered one in place (coalescing).
func (d *dispatcher) push(ev event) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	if i, ok := d.pending[ev.c]; ok && ev.dereg == nil && len(d.queue) >= d.maxQueue {
		d.queue[i] = ev
	} else {
		if ev.dereg == nil {
			d.pending[ev.c] = len(d.queue)
		}
		d.queue = append(d.queue, ev)
	}
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// run delivers queued events until close; current reports whether an
// event's check is still registered (events of removed checks are dropped).
func (d *dispatcher) run(current func(*check) bool, notify func(Update), deregister func(Deregistration)) {
	defer close(d.done)
	for {
		select {
		case <-d.wake:
		case <-d.stop:
			return
		}
		for {
			d.mu.Lock()
			batch := d.queue
			d.queue = nil
			clear(d.pending)
			d.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			for _, ev := range batch {
				select {
				case <-d.stop:
					return
				default:
				}
				if !current(ev.c) {
					continue
				}
				if ev.dereg != nil {
					if deregister != nil {
						deregister(*ev.dereg)
					}
				} else if notify != nil {
					notify(ev.update)
				}
			}
		}
	}
}

// close drops undelivered events and waits for a callback in progress.
func (d *dispatcher) close() {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		<-d.done
		return
	}
	d.closed = true
	d.queue = nil
	d.mu.Unlock()
	close(d.stop)
	<-d.done
}

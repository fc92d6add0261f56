package twopc

// Hooks inject faults at each step of the protocol, for tests. Every field is
// optional. A hook that returns an error simulates a crash at that point: the
// coordinator's Run returns the error at once (nothing further is written or sent for
// the transaction: recovery has to finish it), and a participant's Server answers the
// request with a 500 without doing anything more. A hook may also block (a pause) or
// panic.
type Hooks struct {
	// Participant side; participant is the Server's Name.

	// BeforePrepare: a prepare request arrived; nothing is persisted.
	BeforePrepare func(participant, txid string) error
	// AfterPrepare: the prepared state is persisted; the vote yes is not sent.
	AfterPrepare func(participant, txid string) error
	// BeforeApply: a commit or abort arrived from the coordinator; it is not applied.
	BeforeApply func(participant, txid string, decision State) error

	// Coordinator side.

	// AfterBegin: the record is preparing; no prepare is sent.
	AfterBegin func(txid string) error
	// BeforeDecision: the votes are in; the decision is not written.
	BeforeDecision func(txid string, decision State) error
	// AfterDecision: the decision is in the log; no participant has been told.
	AfterDecision func(txid string, decision State) error
	// AfterApply: participant acknowledged the decision; the next one is not told yet.
	AfterApply func(txid, participant string, decision State) error
}

func (h *Hooks) beforePrepare(participant, txid string) error {
	if h == nil || h.BeforePrepare == nil {
		return nil
	}
	return h.BeforePrepare(participant, txid)
}

func (h *Hooks) afterPrepare(participant, txid string) error {
	if h == nil || h.AfterPrepare == nil {
		return nil
	}
	return h.AfterPrepare(participant, txid)
}

func (h *Hooks) beforeApply(participant, txid string, d State) error {
	if h == nil || h.BeforeApply == nil {
		return nil
	}
	return h.BeforeApply(participant, txid, d)
}

func (h *Hooks) afterBegin(txid string) error {
	if h == nil || h.AfterBegin == nil {
		return nil
	}
	return h.AfterBegin(txid)
}

func (h *Hooks) beforeDecision(txid string, d State) error {
	if h == nil || h.BeforeDecision == nil {
		return nil
	}
	return h.BeforeDecision(txid, d)
}

func (h *Hooks) afterDecision(txid string, d State) error {
	if h == nil || h.AfterDecision == nil {
		return nil
	}
	return h.AfterDecision(txid, d)
}

func (h *Hooks) afterApply(txid, participant string, d State) error {
	if h == nil || h.AfterApply == nil {
		return nil
	}
	return h.AfterApply(txid, participant, d)
}

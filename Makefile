# chaos: the long linearizability run of test/e2e (faults in turn for WOLKE_LONG_DURATION,
# default 10m; repeat a run's random choices with WOLKE_SEED).
.PHONY: chaos
chaos:
	WOLKE_LONG=1 go test -run Linearizab -count=1 -v -timeout 30m ./test/e2e/

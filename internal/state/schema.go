package state

import (
	"fmt"

	"github.com/hashicorp/go-memdb"
)

// Table names. They appear in snapshots, so renaming one is a format change.
const (
	tableKVs        = "kvs"
	tableTombstones = "tombstones"
	tableIndex      = "index"
	tableSessions   = "sessions"
	tableNodes      = "nodes"
	tableServices   = "services"
	tableChecks     = "checks"
)

// indexEntry records the highest Raft index that changed a table.
type indexEntry struct {
	Table string
	Value uint64
}

func schema() *memdb.DBSchema {
	s := baseSchema()
	for name, t := range catalogTables() {
		s.Tables[name] = t
	}
	return s
}

func baseSchema() *memdb.DBSchema {
	return &memdb.DBSchema{
		Tables: map[string]*memdb.TableSchema{
			tableKVs: {
				Name: tableKVs,
				Indexes: map[string]*memdb.IndexSchema{
					"id": {Name: "id", Unique: true,
						Indexer: fieldIndex[KVEntry]{"Key", func(e *KVEntry) string { return e.Key }}},
					"session": {Name: "session", AllowMissing: true,
						Indexer: fieldIndex[KVEntry]{"Session", func(e *KVEntry) string { return e.Session }}},
				},
			},
			tableTombstones: {
				Name: tableTombstones,
				Indexes: map[string]*memdb.IndexSchema{
					"id": {Name: "id", Unique: true,
						Indexer: fieldIndex[tombstone]{"Key", func(t *tombstone) string { return t.Key }}},
				},
			},
			tableSessions: {
				Name: tableSessions,
				Indexes: map[string]*memdb.IndexSchema{
					"id": {Name: "id", Unique: true,
						Indexer: fieldIndex[Session]{"ID", func(s *Session) string { return s.ID }}},
					"node": {Name: "node", Indexer: fieldIndex[Session]{"Node", func(s *Session) string { return s.Node }}},
				},
			},
			tableIndex: {
				Name: tableIndex,
				Indexes: map[string]*memdb.IndexSchema{
					"id": {Name: "id", Unique: true,
						Indexer: fieldIndex[indexEntry]{"Table", func(e *indexEntry) string { return e.Table }}},
				},
			},
		},
	}
}

// bumpIndex raises the recorded index of a table; indexes never go down.
func bumpIndex(tx *memdb.Txn, table string, idx uint64) error {
	raw, err := tx.First(tableIndex, "id", table)
	if err != nil {
		return fmt.Errorf("read index of %s: %w", table, err)
	}
	if raw != nil && raw.(*indexEntry).Value >= idx {
		return nil
	}
	if err := tx.Insert(tableIndex, &indexEntry{Table: table, Value: idx}); err != nil {
		return fmt.Errorf("write index of %s: %w", table, err)
	}
	return nil
}

// tableIndexTxn returns the highest index recorded for a table, 0 if none.
func tableIndexTxn(tx *memdb.Txn, table string) uint64 {
	raw, err := tx.First(tableIndex, "id", table)
	if err != nil || raw == nil {
		return 0
	}
	return raw.(*indexEntry).Value
}

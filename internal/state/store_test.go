package state

import "testing"

func TestCommitsCountsVisibleWrites(t *testing.T) {
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	c0 := s.Commits()
	tx := s.WriteTxn()
	if err := tx.KVSet(1, &KVEntry{Key: "a"}); err != nil {
		t.Fatal(err)
	}
	if s.Commits() != c0 {
		t.Fatal("Commits moved before the commit")
	}
	tx.Commit()
	if s.Commits() != c0+1 {
		t.Fatalf("Commits %d after one commit from %d", s.Commits(), c0)
	}
	tx = s.WriteTxn()
	tx.KVSet(2, &KVEntry{Key: "b"})
	tx.Abort()
	if s.Commits() != c0+1 {
		t.Fatal("an aborted write counted")
	}
	r, err := s.NewRestore()
	if err != nil {
		t.Fatal(err)
	}
	r.Commit()
	if s.Commits() != c0+2 {
		t.Fatalf("Commits %d after a restore, want %d", s.Commits(), c0+2)
	}
}

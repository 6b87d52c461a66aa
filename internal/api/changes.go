package api

// ChangeKind names what a Change touched.
type ChangeKind string

// The kinds of stored records whose writes are announced.
const (
	ChangeFunction ChangeKind = "function"
	ChangeRoute    ChangeKind = "route"
	ChangeKey      ChangeKind = "key"
	ChangeSecret   ChangeKind = "secret"
)

// Change is one committed write to the store, as a store watch reports it
// to the nodes that share the store. It is a hint to read the record
// again, not the record: readers compare the stored version with their
// own, so a change they made themselves, or saw twice, is a no-op.
type Change struct {
	// Seq orders changes: strictly increasing in commit order. A reader
	// resumes after the last Seq it handled.
	Seq int64 `json:"seq"`
	// Kind "" means anything may have changed (the reader fell behind a
	// pruned log): read everything again.
	Kind ChangeKind `json:"kind,omitempty"`
	// Name is the record's name (a key's id).
	Name    string `json:"name,omitempty"`
	Deleted bool   `json:"deleted,omitempty"`
	// Version is the record's version after the write (functions and
	// routes; 0 for the others and for deletes).
	Version int64 `json:"version,omitempty"`
}

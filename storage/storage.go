// Package storage owns ordered stream history: it assigns every publication of
// a stream its offset within the stream's epoch, keeps a bounded window of
// recent publications, and answers "what came after position P".
//
// It must not deliver anything to connections, encode wire messages, or know
// about subscribers: the broker decides when a stored publication is sent.
package storage

import (
	"context"
	"errors"
	"time"
)

// Errors returned by Log implementations.
var (
	// ErrEpochMismatch means the caller's position belongs to an older epoch:
	// history was lost since, so the caller cannot recover.
	ErrEpochMismatch = errors.New("storage: epoch mismatch")
	// ErrUnavailable means the backend cannot be reached; nothing was stored.
	ErrUnavailable = errors.New("storage: backend unavailable")
	// ErrDocumentFull means a document stream is at its byte cap: the
	// publication was refused, not numbered, and nothing was evicted. A
	// snapshot (Compact) makes room.
	ErrDocumentFull = errors.New("storage: document is at its size cap; compact it")
	// ErrSnapshotAhead means a snapshot named an offset the stream has not
	// reached.
	ErrSnapshotAhead = errors.New("storage: snapshot offset is past the stream's top")
)

// Publication is one stored message of a stream.
type Publication struct {
	// Offset is assigned by Append: previous offset + 1 within the epoch.
	Offset uint64
	// Data is the payload, msgpack-encoded (the codec-neutral form).
	Data []byte
	// User and Client identify the publishing connection; both empty for
	// server-side publishes.
	User, Client string
	// Time is when the publication was appended, unix milliseconds.
	Time int64
}

// PublicationOverhead is what a stored publication counts for against a
// byte bound beyond its Data, User and Client: the backend's bookkeeping
// for it (a window slot and an eviction-queue entry in memory). Without it
// a flood of empty publications would cost nothing against the bound.
const PublicationOverhead = 128

// StoredBytes returns what p counts for against a byte bound of history:
// len(Data) + len(User) + len(Client) + PublicationOverhead.
func (p Publication) StoredBytes() int {
	return len(p.Data) + len(p.User) + len(p.Client) + PublicationOverhead
}

// Position is a point in a stream: everything up to and including Offset
// within Epoch.
type Position struct {
	Epoch  string
	Offset uint64
}

// Options bound a stream's history. The zero value keeps nothing but still
// numbers publications.
type Options struct {
	// Size is the most publications kept; 0 keeps none.
	Size int
	// TTL is how long a publication is kept; 0 means no age bound.
	TTL time.Duration
	// MetaTTL is how long an idle stream's epoch and offset are remembered
	// after its last publication; 0 means the implementation default
	// (24 hours). When it lapses the stream restarts with a new epoch.
	MetaTTL time.Duration
	// Document makes the stream a durable document: it keeps its latest
	// snapshot (see Compactor) and every publication after it, with no
	// count or age bound, and its epoch does not expire. Size, TTL and
	// MetaTTL are ignored. Byte caps still hold, but refuse a publication
	// (ErrDocumentFull) instead of evicting: a document that lost an
	// update would be wrong for every later reader.
	Document bool
}

// Query selects publications of one stream.
type Query struct {
	// After returns only publications with offset > After.Offset. If
	// After.Epoch is set and differs from the stream's epoch, Read returns
	// ErrEpochMismatch together with the current top.
	After Position
	// Limit caps the result; 0 means no cap.
	Limit int
	// Reverse returns the newest publications first (the newest Limit of
	// those after After.Offset).
	Reverse bool
	// MaxBytes caps the summed len(Data) of the result; 0 means no cap.
	// The first matching publication is returned even when it alone is
	// larger, so a reader always makes progress. More is set when the cap
	// cut the result short.
	MaxBytes int
}

// Result is what Read found.
type Result struct {
	// Pubs are the matching publications, ascending by offset unless the
	// query asked for Reverse.
	Pubs []Publication
	// Top is the stream's current epoch and last assigned offset.
	Top Position
	// Complete reports that history still held every publication with
	// offset in (After.Offset, Top.Offset]: none was evicted by the size or
	// age bound. A recovery may only succeed when Complete is true.
	Complete bool
	// More reports that Limit or MaxBytes cut the result short.
	More bool
	// Snapshot reports that Pubs[0] is a document's snapshot rather than a
	// publication: the state of the document through its Offset, which
	// replaces the publications up to it. A document stream's Read starts
	// with the snapshot whenever After.Offset is below the snapshot's
	// offset; Reverse reads never include it.
	Snapshot bool
}

// Log is ordered, bounded stream history. Implementations are safe for
// concurrent use; offsets of one stream are contiguous within an epoch.
type Log interface {
	// Append stores pub (its Offset and Time are ignored) and returns it
	// with the assigned offset, the append time, and the stream's epoch.
	// opts become the stream's bounds from then on.
	Append(ctx context.Context, stream string, pub Publication, opts Options) (Publication, Position, error)
	// Read returns publications selected by q. On a stream never published
	// to it finds nothing, reports Complete, and returns in Top the same
	// fresh epoch that Top would.
	Read(ctx context.Context, stream string, q Query) (Result, error)
	// Top returns the stream's current position. A stream never published
	// to has offset 0 and a fresh epoch, which later Appends keep.
	Top(ctx context.Context, stream string) (Position, error)
}

// Compactor is a Log that keeps document streams (Options.Document).
type Compactor interface {
	// Compact replaces the document's snapshot with data, the state of the
	// document through at.Offset, and drops the publications up to it. It
	// reports false, storing nothing, when the document already has a
	// snapshot at or past at.Offset. at.Epoch must be the stream's epoch
	// (ErrEpochMismatch otherwise) and at.Offset at most its top
	// (ErrSnapshotAhead) and above 0. opts are the stream's options, with
	// Document set.
	Compact(ctx context.Context, stream string, at Position, data []byte, opts Options) (bool, error)
}

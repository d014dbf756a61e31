package dns

import (
	"context"
	"sync/atomic"
)

// CachedRun is the set of lookups made through one CacheView. Its cache
// hits are told to the Observer only by Keep, so that a run thrown away and
// done again does not count its lookups twice.
type CachedRun struct {
	r      *Resolver
	hits   atomic.Int64
	missed atomic.Bool
}

type cacheOnlyKey struct{}

// Missed reports whether a lookup of the run needed more than the cache.
func (c *CachedRun) Missed() bool { return c.missed.Load() }

// Keep reports the run's cache hits to the Observer: call it when the
// run's result is used.
func (c *CachedRun) Keep() {
	for range c.hits.Swap(0) {
		c.r.obs.Cache(true)
	}
}

// cachedRun returns the CacheOnly run ctx belongs to, or nil.
func cachedRun(ctx context.Context) *CachedRun {
	run, _ := ctx.Value(cacheOnlyKey{}).(*CachedRun)
	if run == nil || run.r == nil {
		return nil
	}
	return run
}

// notCached is the answer to a lookup the cache could not answer under
// CacheOnly. It is never cached itself.
var notCached = &entry{kind: kindFailure, temporary: true, msg: "not in the cache (cache-only lookup)"}

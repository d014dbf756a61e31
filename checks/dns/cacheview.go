package dns

import (
	"context"
	"net"
)

// CacheView is a Lookuper that answers only from a Resolver's cache: a
// lookup the cache cannot answer fails at once, as a temporary error,
// asks nobody, and marks the view Missed. A caller runs a check over a
// view first, where waiting is not allowed, and again over the Resolver
// when the view missed.
type CacheView struct {
	r   *Resolver
	run *CachedRun
}

// CacheOnly returns a fresh view of r's cache.
func (r *Resolver) CacheOnly() *CacheView {
	return &CacheView{r: r, run: &CachedRun{r: r}}
}

// Missed reports whether a lookup through the view needed more than the
// cache.
func (v *CacheView) Missed() bool { return v.run.Missed() }

// Keep reports the view's cache hits to the Observer: call it when the
// result computed through the view is used.
func (v *CacheView) Keep() { v.run.Keep() }

func (v *CacheView) ctx(ctx context.Context) context.Context {
	return context.WithValue(ctx, cacheOnlyKey{}, v.run)
}

func (v *CacheView) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	return v.r.LookupAddr(v.ctx(ctx), addr)
}

func (v *CacheView) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	return v.r.LookupIPAddr(v.ctx(ctx), host)
}

func (v *CacheView) LookupTXT(ctx context.Context, name string) ([]string, error) {
	return v.r.LookupTXT(v.ctx(ctx), name)
}

func (v *CacheView) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	return v.r.LookupMX(v.ctx(ctx), name)
}

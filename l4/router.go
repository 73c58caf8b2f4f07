package l4

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/iwalb/iwalb/internal/hostname"
	"github.com/iwalb/iwalb/lb"
)

// ConnHandler takes over a connection instead of relaying it to a pool; the
// L7 front door implements it so one :443 can serve both patterns. The
// connection replays the ClientHello bytes first; it is closed when
// ServeConn returns.
type ConnHandler interface {
	ServeConn(ctx context.Context, c net.Conn)
}

// Route sends the connections whose server name matches to a pool or a
// handler.
type Route struct {
	// Name labels the route in logs and metrics.
	Name string
	// ServerNames are exact names ("auth.example.test") or wildcards
	// ("*.example.test", which matches exactly one extra leftmost label, as
	// certificates do). Matching ignores case. Empty for a default route.
	ServerNames []string
	// Pool receives the relayed connections. Exactly one of Pool and
	// Handler is set.
	Pool *lb.Pool
	// ProxyProtocol is the PROXY protocol version (1 or 2) written to the
	// backend before the client's bytes; 0 sends none.
	ProxyProtocol int
	// Handler takes the connection over instead of a pool.
	Handler ConnHandler
}

// Router maps a server name to a route. It is immutable; build a new one
// with NewRouter on reload and swap it in with Server.Update.
type Router struct {
	exact    map[string]*Route
	wildcard map[string]*Route // key: the suffix after "*."
	def      *Route
}

// NewRouter validates routes and compiles them. def, if not nil, takes
// connections without SNI or with a name no route matches; without it those
// connections are closed. All problems are reported together.
func NewRouter(routes []Route, def *Route) (*Router, error) {
	r := &Router{exact: map[string]*Route{}, wildcard: map[string]*Route{}}
	routes = slices.Clone(routes) // the router must not change under the caller's edits
	var errs []error
	check := func(rt *Route) {
		switch {
		case rt.Name == "":
			errs = append(errs, errors.New("route with no name"))
		case (rt.Pool == nil) == (rt.Handler == nil):
			errs = append(errs, fmt.Errorf("route %q: set exactly one of pool and handler", rt.Name))
		case rt.ProxyProtocol < 0 || rt.ProxyProtocol > 2:
			errs = append(errs, fmt.Errorf("route %q: PROXY protocol version %d (want 0, 1 or 2)", rt.Name, rt.ProxyProtocol))
		case rt.Handler != nil && rt.ProxyProtocol != 0:
			errs = append(errs, fmt.Errorf("route %q: PROXY protocol applies to pools only", rt.Name))
		}
	}
	for i := range routes {
		rt := &routes[i]
		check(rt)
		if len(rt.ServerNames) == 0 {
			errs = append(errs, fmt.Errorf("route %q: no server names (use the default route instead)", rt.Name))
		}
		for _, n := range rt.ServerNames {
			n = strings.ToLower(n)
			m, key := r.exact, n
			if suffix, ok := strings.CutPrefix(n, "*."); ok {
				m, key = r.wildcard, suffix
			}
			if !hostname.ValidSNI(key) {
				errs = append(errs, fmt.Errorf("route %q: invalid server name %q", rt.Name, n))
				continue
			}
			if prev := m[key]; prev != nil {
				errs = append(errs, fmt.Errorf("route %q: server name %q already routed by %q", rt.Name, n, prev.Name))
				continue
			}
			m[key] = rt
		}
	}
	if def != nil {
		d := *def
		check(&d)
		r.def = &d
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return r, nil
}

// Match returns the route for serverName (already lower-case, as
// ParseClientHello returns it): an exact name first, then a wildcard, then
// the default route. It returns nil when nothing matches and there is no
// default.
func (r *Router) Match(serverName string) *Route {
	if serverName != "" {
		if rt := r.exact[serverName]; rt != nil {
			return rt
		}
		if i := strings.IndexByte(serverName, '.'); i > 0 {
			if rt := r.wildcard[serverName[i+1:]]; rt != nil {
				return rt
			}
		}
	}
	return r.def
}

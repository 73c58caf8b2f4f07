package browser

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// Page is what a tab showed once its navigation settled.
type Page struct {
	// URL is the final location.href, after HTTP and script redirects.
	URL string
	// Title is document.title.
	Title string
	// Text is document.body.innerText (what a user reads).
	Text string
	// HTML is document.documentElement.outerHTML.
	HTML string
}

// quietPeriod is how long the main frame must stay loaded with no new
// navigation before Navigate reads the page. HTTP redirects happen before
// the load event; this catches script and meta redirects that fire at once.
const quietPeriod = 250 * time.Millisecond

// readPage is the script that fills a Page.
const readPage = `({
	URL: location.href,
	Title: document.title,
	Text: document.body ? document.body.innerText : "",
	HTML: document.documentElement ? document.documentElement.outerHTML : ""
})`

// Navigate opens a new tab, loads url, waits until the load event has fired
// and the main frame has been quiet for a short while (so redirect chains
// end on their final page), reads the page and closes the tab. Cookies stay
// in the browser for later navigations. ctx bounds every wait. When Chromium
// reports that the navigation failed the error wraps ErrNavigate.
func (b *Browser) Navigate(ctx context.Context, url string) (*Page, error) {
	// The tab is closed when tab ends; ctx ends only the work in it, so
	// that a timed-out navigation still closes its tab.
	tab, closeTab := chromedp.NewContext(b.ctx)
	defer closeTab()
	work, stop := context.WithCancelCause(tab)
	defer stop(nil)
	defer context.AfterFunc(ctx, func() { stop(context.Cause(ctx)) })()

	p, err := navigate(work, url)
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", context.Cause(ctx), err)
		}
		return nil, fmt.Errorf("browser: navigate to %s: %w", url, err)
	}
	return p, nil
}

func navigate(ctx context.Context, url string) (*Page, error) {
	events := &frameEvents{notify: make(chan struct{}, 1)}
	if err := chromedp.Listen(ctx, events.add); err != nil { // opens the tab
		return nil, fmt.Errorf("open tab: %w", err)
	}
	// Events of about:blank may still be queued; only what follows counts.
	events.drain()
	nav, err := chromedp.Run(ctx, func(ctx context.Context, t *chromedp.Target) (page.NavigateResult, error) {
		return cdp.Call(ctx, t, page.Navigate, page.NavigateParams{URL: url})
	})
	if err != nil {
		return nil, err
	}
	if nav.ErrorText != "" {
		return nil, fmt.Errorf("%w: %s", ErrNavigate, nav.ErrorText)
	}
	if err := events.waitSettled(ctx, nav.FrameID); err != nil {
		return nil, err
	}
	p, err := chromedp.Run(ctx, chromedp.Evaluate[Page](readPage))
	if err != nil {
		return nil, fmt.Errorf("read page: %w", err)
	}
	return &p, nil
}

// frameEvents queues a tab's frame and load events. add runs on chromedp's
// reading goroutine, so it only appends; waitSettled judges them.
type frameEvents struct {
	mu     sync.Mutex
	queue  []any
	notify chan struct{} // buffered; has a value while queue may be non-empty
}

func (e *frameEvents) add(ev any) {
	switch ev.(type) {
	case *page.EventFrameStartedLoading, *page.EventFrameNavigated, *page.EventLoadEventFired, *page.EventFrameStoppedLoading:
	default:
		return
	}
	e.mu.Lock()
	e.queue = append(e.queue, ev)
	e.mu.Unlock()
	select {
	case e.notify <- struct{}{}:
	default:
	}
}

func (e *frameEvents) drain() []any {
	e.mu.Lock()
	defer e.mu.Unlock()
	q := e.queue
	e.queue = nil
	return q
}

// waitSettled waits until the main frame has fired its load event, stopped
// loading, and seen no further navigation for quietPeriod.
func (e *frameEvents) waitSettled(ctx context.Context, mainFrame cdp.FrameID) error {
	loaded, loading := false, true
	quiet := time.NewTimer(time.Hour)
	quiet.Stop()
	defer quiet.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the page to load: %w", context.Cause(ctx))
		case <-quiet.C:
			if loaded && !loading {
				return nil
			}
		case <-e.notify:
			for _, ev := range e.drain() {
				switch ev := ev.(type) {
				case *page.EventFrameStartedLoading:
					if ev.FrameID == mainFrame {
						loaded, loading = false, true
					}
				case *page.EventFrameNavigated:
					if ev.Frame.ParentID == "" {
						loaded = false
					}
				case *page.EventLoadEventFired:
					loaded = true
				case *page.EventFrameStoppedLoading:
					if ev.FrameID == mainFrame {
						loading = false
					}
				}
				quiet.Reset(quietPeriod)
			}
		}
	}
}

// Shot is a page as Tab.Until saw it: what it read, and a PNG of the
// whole page.
type Shot struct {
	Page
	PNG []byte
}

// Tab is a page left open, for pages that change by themselves (a script
// that refreshes them): Until reads it each time it is ready.
type Tab struct {
	ctx   context.Context // the tab's chromedp context
	close func()
}

// Open opens a new tab and loads url, waiting as Navigate does; ctx bounds
// the load only. Close the tab when done.
func (b *Browser) Open(ctx context.Context, url string) (*Tab, error) {
	tabCtx, closeTab := chromedp.NewContext(b.ctx)
	t := &Tab{ctx: tabCtx, close: closeTab}
	// The tab lives as long as the context it is opened with: tabCtx, not
	// the shorter ones each step runs under.
	if err := chromedp.Listen(tabCtx, func(any) {}); err != nil {
		closeTab()
		return nil, fmt.Errorf("browser: open tab: %w", err)
	}
	err := t.run(ctx, func(ctx context.Context) error {
		_, err := navigate(ctx, url)
		return err
	})
	if err != nil {
		closeTab()
		return nil, fmt.Errorf("browser: open %s: %w", url, err)
	}
	return t, nil
}

// Until waits until the JavaScript expression ready is true in the tab,
// then reads the page and takes a full-page PNG screenshot. ctx bounds the
// wait: a ready that stays false fails when ctx ends.
func (t *Tab) Until(ctx context.Context, ready string) (*Shot, error) {
	var s *Shot
	err := t.run(ctx, func(ctx context.Context) error {
		for {
			_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](ready, chromedp.WithPollingTimeout(0)))
			if err == nil {
				break
			}
			// A navigation (a form submitted, a redirect) replaces the
			// page the poll ran in: poll the next one.
			if ctx.Err() == nil && navigatedAway(err) {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			return fmt.Errorf("wait for %s: %w", ready, err)
		}
		page, err := chromedp.Run(ctx, chromedp.Evaluate[Page](readPage))
		if err != nil {
			return fmt.Errorf("read page: %w", err)
		}
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			return fmt.Errorf("screenshot: %w", err)
		}
		s = &Shot{Page: page, PNG: png}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("browser: %w", err)
	}
	return s, nil
}

// Eval runs the JavaScript expression js in the tab, such as filling and
// submitting a form; what it starts (a navigation) goes on after it
// returns: wait for its outcome with Until.
func (t *Tab) Eval(ctx context.Context, js string) error {
	err := t.run(ctx, func(ctx context.Context) error {
		_, err := chromedp.Run(ctx, chromedp.Evaluate[chromedp.Void](js))
		return err
	})
	if err != nil {
		return fmt.Errorf("browser: eval: %w", err)
	}
	return nil
}

// navigatedAway says whether err is Chromium's for a script whose page
// went away under it.
func navigatedAway(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "Cannot find context with specified id") ||
		strings.Contains(msg, "Execution context was destroyed") ||
		strings.Contains(msg, "Inspected target navigated or closed")
}

// Close closes the tab.
func (t *Tab) Close() { t.close() }

// run runs fn on the tab, ended when ctx ends (the tab stays open).
func (t *Tab) run(ctx context.Context, fn func(context.Context) error) error {
	work, stop := context.WithCancelCause(t.ctx)
	defer stop(nil)
	defer context.AfterFunc(ctx, func() { stop(context.Cause(ctx)) })()
	err := fn(work)
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w (%v)", context.Cause(ctx), err)
	}
	return err
}

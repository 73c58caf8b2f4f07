package browser

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
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

// Navigate opens a new tab, loads url, waits until the load event has fired
// and the main frame has been quiet for a short while (so redirect chains
// end on their final page), reads the page and closes the tab. Cookies stay
// in the browser for later navigations. ctx bounds every wait. When Chromium
// reports that the navigation failed the error wraps ErrNavigate.
func (b *Browser) Navigate(ctx context.Context, url string) (*Page, error) {
	var target struct {
		TargetID string `json:"targetId"`
	}
	if err := b.cdp.call(ctx, "", "Target.createTarget", map[string]any{"url": "about:blank"}, &target); err != nil {
		return nil, fmt.Errorf("browser: navigate to %s: open tab: %w", url, err)
	}
	defer func() {
		// Close the tab even when ctx is done, but do not wait long for it.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = b.cdp.call(cctx, "", "Target.closeTarget", map[string]any{"targetId": target.TargetID}, nil)
	}()

	var session struct {
		SessionID string `json:"sessionId"`
	}
	if err := b.cdp.call(ctx, "", "Target.attachToTarget",
		map[string]any{"targetId": target.TargetID, "flatten": true}, &session); err != nil {
		return nil, fmt.Errorf("browser: navigate to %s: attach to tab: %w", url, err)
	}
	sid := session.SessionID
	events, unsubscribe := b.cdp.subscribe(sid)
	defer unsubscribe()

	if err := b.cdp.call(ctx, sid, "Page.enable", nil, nil); err != nil {
		return nil, fmt.Errorf("browser: navigate to %s: %w", url, err)
	}
	// Events of about:blank may still be queued; only what follows counts.
	events.drain()

	var nav struct {
		FrameID   string `json:"frameId"`
		ErrorText string `json:"errorText"`
	}
	if err := b.cdp.call(ctx, sid, "Page.navigate", map[string]any{"url": url}, &nav); err != nil {
		return nil, fmt.Errorf("browser: navigate to %s: %w", url, err)
	}
	if nav.ErrorText != "" {
		return nil, fmt.Errorf("browser: navigate to %s: %w: %s", url, ErrNavigate, nav.ErrorText)
	}
	if err := waitSettled(ctx, events, nav.FrameID); err != nil {
		return nil, fmt.Errorf("browser: navigate to %s: %w", url, err)
	}

	var eval struct {
		Result struct {
			Value Page `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	const readPage = `({
		URL: location.href,
		Title: document.title,
		Text: document.body ? document.body.innerText : "",
		HTML: document.documentElement ? document.documentElement.outerHTML : ""
	})`
	if err := b.cdp.call(ctx, sid, "Runtime.evaluate",
		map[string]any{"expression": readPage, "returnByValue": true}, &eval); err != nil {
		return nil, fmt.Errorf("browser: navigate to %s: read page: %w", url, err)
	}
	if eval.ExceptionDetails != nil {
		return nil, fmt.Errorf("browser: navigate to %s: read page: %s", url, eval.ExceptionDetails.Text)
	}
	p := eval.Result.Value
	return &p, nil
}

// waitSettled waits until the main frame has fired its load event, stopped
// loading, and seen no further navigation for quietPeriod.
func waitSettled(ctx context.Context, events *eventQueue, mainFrame string) error {
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
		case <-events.notify:
			for _, ev := range events.drain() {
				var p struct {
					FrameID string `json:"frameId"`
					Frame   struct {
						ID       string `json:"id"`
						ParentID string `json:"parentId"`
					} `json:"frame"`
				}
				_ = json.Unmarshal(ev.Params, &p)
				switch ev.Method {
				case "Page.frameStartedLoading":
					if p.FrameID == mainFrame {
						loaded, loading = false, true
					}
				case "Page.frameNavigated":
					if p.Frame.ParentID == "" {
						loaded = false
					}
				case "Page.loadEventFired":
					loaded = true
				case "Page.frameStoppedLoading":
					if p.FrameID == mainFrame {
						loading = false
					}
				default:
					continue
				}
				quiet.Reset(quietPeriod)
			}
		}
	}
}

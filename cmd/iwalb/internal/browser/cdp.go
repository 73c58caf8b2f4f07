package browser

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
)

// cdpConn is one DevTools protocol connection to the browser target. Page
// targets are reached over the same connection through flat sessions
// (Target.attachToTarget with flatten), so one reader goroutine serves all.
type cdpConn struct {
	ws   *wsConn
	done chan struct{} // closed when the reader stops

	mu      sync.Mutex
	nextID  int64
	pending map[int64]chan cdpMessage
	subs    map[string]*eventQueue // by session id
	err     error                  // why the reader stopped
}

type cdpMessage struct {
	ID        int64           `json:"id,omitempty"`
	SessionID string          `json:"sessionId,omitempty"`
	Method    string          `json:"method,omitempty"`
	Params    json.RawMessage `json:"params,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     *cdpError       `json:"error,omitempty"`
}

type cdpError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    string `json:"data,omitempty"`
}

func (e *cdpError) Error() string {
	if e.Data != "" {
		return fmt.Sprintf("devtools error %d: %s (%s)", e.Code, e.Message, e.Data)
	}
	return fmt.Sprintf("devtools error %d: %s", e.Code, e.Message)
}

// errConnClosed is reported to callers whose command was cut off because the
// DevTools connection went away (browser exited or Close was called).
var errConnClosed = errors.New("devtools connection closed")

func newCDPConn(ws *wsConn) *cdpConn {
	c := &cdpConn{
		ws:      ws,
		done:    make(chan struct{}),
		pending: make(map[int64]chan cdpMessage),
		subs:    make(map[string]*eventQueue),
	}
	go c.readLoop()
	return c
}

func (c *cdpConn) readLoop() {
	var err error
	for {
		var raw []byte
		raw, err = c.ws.ReadMessage()
		if err != nil {
			break
		}
		var m cdpMessage
		if json.Unmarshal(raw, &m) != nil {
			continue // not ours to judge; DevTools only sends JSON
		}
		c.mu.Lock()
		if m.ID != 0 {
			if ch, ok := c.pending[m.ID]; ok {
				delete(c.pending, m.ID)
				ch <- m // buffered
			}
		} else if q, ok := c.subs[m.SessionID]; ok && m.Method != "" {
			q.push(m)
		}
		c.mu.Unlock()
	}
	c.mu.Lock()
	c.err = fmt.Errorf("%w: %v", errConnClosed, err)
	c.mu.Unlock()
	close(c.done)
}

// close stops the reader and waits for it.
func (c *cdpConn) close() {
	_ = c.ws.Close()
	<-c.done
}

// call sends method with params (to sessionID, or the browser when empty),
// waits for the answer bounded by ctx, and decodes its result into result
// (unless nil).
func (c *cdpConn) call(ctx context.Context, sessionID, method string, params, result any) error {
	if params == nil {
		params = struct{}{}
	}
	p, err := json.Marshal(params)
	if err != nil {
		return fmt.Errorf("%s: encode params: %w", method, err)
	}
	ch := make(chan cdpMessage, 1)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return fmt.Errorf("%s: %w", method, err)
	}
	c.nextID++
	id := c.nextID
	c.pending[id] = ch
	c.mu.Unlock()
	forget := func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}

	msg, err := json.Marshal(cdpMessage{ID: id, SessionID: sessionID, Method: method, Params: p})
	if err != nil {
		forget()
		return fmt.Errorf("%s: encode: %w", method, err)
	}
	if err := c.ws.WriteText(msg); err != nil {
		forget()
		return fmt.Errorf("%s: send: %w", method, err)
	}
	select {
	case m := <-ch:
		if m.Error != nil {
			return fmt.Errorf("%s: %w", method, m.Error)
		}
		if result != nil {
			if err := json.Unmarshal(m.Result, result); err != nil {
				return fmt.Errorf("%s: decode result: %w", method, err)
			}
		}
		return nil
	case <-ctx.Done():
		forget()
		return fmt.Errorf("%s: %w", method, context.Cause(ctx))
	case <-c.done:
		c.mu.Lock()
		err := c.err
		c.mu.Unlock()
		return fmt.Errorf("%s: %w", method, err)
	}
}

// subscribe starts queueing the events of one session. The returned cancel
// must be called when the caller is done with it.
func (c *cdpConn) subscribe(sessionID string) (*eventQueue, func()) {
	q := &eventQueue{notify: make(chan struct{}, 1)}
	c.mu.Lock()
	c.subs[sessionID] = q
	c.mu.Unlock()
	return q, func() {
		c.mu.Lock()
		delete(c.subs, sessionID)
		c.mu.Unlock()
	}
}

// eventQueue is an unbounded queue, so that the reader never blocks on a
// slow consumer (which may itself be waiting for a command's answer).
type eventQueue struct {
	mu     sync.Mutex
	items  []cdpMessage
	notify chan struct{} // has a value when items may be non-empty
}

func (q *eventQueue) push(m cdpMessage) {
	q.mu.Lock()
	q.items = append(q.items, m)
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

// drain returns and clears the queued events.
func (q *eventQueue) drain() []cdpMessage {
	q.mu.Lock()
	defer q.mu.Unlock()
	items := q.items
	q.items = nil
	return items
}

package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// fakeNode answers every API call with status, counting the calls.
func fakeNode(t *testing.T, status int, calls *atomic.Int32) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(status)
		if status == http.StatusOK {
			_, _ = io.WriteString(w, `{"sAMAccountName":"alice","session":{"id":"s"}}`)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestSharedStoreAsksOneNode: with per-node stores a 404 sends the app to
// the next node; with a shared store a 404 is the answer, and the next node
// is asked only when a node cannot answer.
func TestSharedStoreAsksOneNode(t *testing.T) {
	for _, c := range []struct {
		name        string
		shared      bool
		first       int // 0: a node that does not answer
		secondCalls int32
		ok          bool
	}{
		{"per-node stores, token not at the first node", false, http.StatusNotFound, 1, true},
		{"shared store, token unknown", true, http.StatusNotFound, 0, false},
		{"shared store, first node answers", true, http.StatusOK, 0, true},
		{"shared store, first node's Redis unreachable", true, http.StatusServiceUnavailable, 1, true},
		{"shared store, first node down", true, 0, 1, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			var firstCalls, secondCalls atomic.Int32
			first := "http://127.0.0.1:1" // nothing listens on port 1
			if c.first != 0 {
				first = fakeNode(t, c.first, &firstCalls)
			}
			a := &app{
				nodes:  []string{first, fakeNode(t, http.StatusOK, &secondCalls)},
				shared: c.shared, apiKey: "k", client: http.DefaultClient,
				log: slog.New(slog.DiscardHandler),
			}
			id, err := a.call(context.Background(), "/api/v1/tokens/redeem", "token", "t")
			if (err == nil) != c.ok || secondCalls.Load() != c.secondCalls {
				t.Fatalf("call: %+v, %v; the second node was asked %d times, want %d", id, err, secondCalls.Load(), c.secondCalls)
			}
		})
	}
}
